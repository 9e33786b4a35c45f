//! driver placeholder
/// x
#[derive(Debug, Clone, Default)] pub struct DriverConfig;
/// x
#[derive(Debug)] pub struct ReversalDriver;
