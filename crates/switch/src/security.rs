//! Security operations behind one trait, so a hardware security module can take the
//! software implementation's place: [`SecurityOps`] and [`SoftSecurity`] (over
//! `isoswitch_session::crypto`).
//!
//! The switch calls it for the one cryptographic step that is its own: translating a
//! terminal's PIN block from the terminal PIN key to the zone PIN key. The clear PIN never
//! leaves the call. MACs and key check values have the same trait so that one module
//! holds every key operation.

use isoswitch_session::crypto::{
    self, check_kcv, KcvMethod, Key, MacAlgorithm, MacValue, Pan, PinBlock, PinBlockFormat,
};

use crate::error::Result;

/// The key operations a switch needs; see the module docs.
pub trait SecurityOps: Send + Sync + 'static {
    /// Translates `block` (format `from_format`, under `from`) to `to_format` under `to`.
    ///
    /// # Errors
    /// [`isoswitch_session::SessionError::BadPinBlock`] (answer `99`), a PAN that does
    /// not fit the block, a key of the wrong kind.
    fn translate_pin(
        &self,
        block: &[u8],
        from_format: PinBlockFormat,
        pan: &str,
        from: &Key,
        to_format: PinBlockFormat,
        to: &Key,
    ) -> Result<PinBlock>;

    /// The MAC of `data` under `key`.
    ///
    /// # Errors
    /// A key that does not suit the algorithm.
    fn generate_mac(&self, algorithm: MacAlgorithm, key: &Key, data: &[u8]) -> Result<MacValue>;

    /// Whether `mac` is the MAC of `data` under `key` (compared in constant time).
    fn verify_mac(&self, algorithm: MacAlgorithm, key: &Key, data: &[u8], mac: &[u8]) -> bool;

    /// Whether `kcv` is `key`'s check value (compared in constant time).
    fn check_kcv(&self, key: &Key, method: KcvMethod, kcv: &[u8]) -> bool;
}

/// The software implementation over `isoswitch_session::crypto`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoftSecurity;

impl SecurityOps for SoftSecurity {
    fn translate_pin(
        &self,
        block: &[u8],
        from_format: PinBlockFormat,
        pan: &str,
        from: &Key,
        to_format: PinBlockFormat,
        to: &Key,
    ) -> Result<PinBlock> {
        let pan = Pan::new(pan)?;
        let block = PinBlock::from_bytes(from_format, block)?;
        Ok(crypto::translate(&block, Some(&pan), from, to_format, to)?)
    }

    fn generate_mac(&self, algorithm: MacAlgorithm, key: &Key, data: &[u8]) -> Result<MacValue> {
        Ok(crypto::compute(algorithm, key, data)?)
    }

    fn verify_mac(&self, algorithm: MacAlgorithm, key: &Key, data: &[u8], mac: &[u8]) -> bool {
        crypto::compute(algorithm, key, data).is_ok_and(|m| m.verify(mac).is_ok())
    }

    fn check_kcv(&self, key: &Key, method: KcvMethod, kcv: &[u8]) -> bool {
        check_kcv(key, method, kcv).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isoswitch_session::crypto::{Fill, Padding, Pin};

    fn tdes(hex: &str) -> Key {
        let b: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        Key::tdes(&b).unwrap()
    }

    #[test]
    fn translates_a_pin_block_between_keys() {
        let from = tdes("0123456789ABCDEFFEDCBA9876543210");
        let to = tdes("89ABCDEF01234567FEDCBA9876543210");
        let pan = "4111111111111111";
        let block = PinBlock::encipher(
            PinBlockFormat::Iso0,
            &Pin::new("1234").unwrap(),
            Some(&Pan::new(pan).unwrap()),
            &from,
            Fill::Random,
        )
        .unwrap();
        let soft = SoftSecurity;
        let out = soft
            .translate_pin(
                block.as_bytes(),
                PinBlockFormat::Iso0,
                pan,
                &from,
                PinBlockFormat::Iso0,
                &to,
            )
            .unwrap();
        let pin = out.decipher(Some(&Pan::new(pan).unwrap()), &to).unwrap();
        assert_eq!(pin.len(), 4);
        // Under the wrong key the block does not decipher to a valid PIN block: 99.
        let wrong = soft.translate_pin(
            block.as_bytes(),
            PinBlockFormat::Iso0,
            pan,
            &to,
            PinBlockFormat::Iso0,
            &from,
        );
        assert!(wrong.is_err());
    }

    #[test]
    fn macs_verify_in_constant_time_and_refuse_a_flipped_bit() {
        let k = tdes("0123456789ABCDEFFEDCBA9876543210");
        let alg = MacAlgorithm::X919(Padding::Method1);
        let soft = SoftSecurity;
        let mac = soft.generate_mac(alg, &k, b"0200 sale").unwrap();
        assert!(soft.verify_mac(alg, &k, b"0200 sale", mac.as_bytes()));
        let mut bad = mac.as_bytes().to_vec();
        bad[0] ^= 1;
        assert!(!soft.verify_mac(alg, &k, b"0200 sale", &bad));
    }
}
