//! Command implementations of the `isoswitch` binary that go beyond wiring: the
//! argument helpers every crypto command shares ([`args`]), and the key-management
//! commands — PIN blocks ([`pinblock`]), DUKPT ([`dukpt`]), TR-31 key blocks
//! ([`tr31`]). Each command function returns its output text or a one-line error
//! naming the option that was wrong; `main` prints it and sets the exit status.

pub mod args;
pub mod dukpt;
pub mod pinblock;
pub mod tr31;
