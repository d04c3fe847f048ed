//! Entry points for fuzz targets (`fuzz/`), kept here so they compile with every build.

use crate::{
    PaymentPayload, PaymentRequest, PaymentRequired, SettleResponse, decode_header, encode_header,
};

/// Decodes `data` as every header an x402 server or client accepts from a peer. Must never
/// panic; whatever decodes must survive re-encoding unchanged.
pub fn decode_untrusted_headers(data: &[u8]) {
    if let Ok(payment) = decode_header::<PaymentPayload>(data) {
        let again: PaymentPayload = decode_header(encode_header(&payment).as_bytes())
            .unwrap_or_else(|e| panic!("re-encoded payment does not decode: {e}"));
        assert_eq!(again, payment);
    }
    if let Ok(required) = decode_header::<PaymentRequired>(data) {
        let again: PaymentRequired = decode_header(encode_header(&required).as_bytes())
            .unwrap_or_else(|e| panic!("re-encoded challenge does not decode: {e}"));
        assert_eq!(again, required);
    }
    if let Ok(receipt) = decode_header::<SettleResponse>(data) {
        let again: SettleResponse = decode_header(encode_header(&receipt).as_bytes())
            .unwrap_or_else(|e| panic!("re-encoded receipt does not decode: {e}"));
        assert_eq!(again, receipt);
    }
    // Facilitator request bodies are plain JSON, also untrusted.
    let _ = serde_json::from_slice::<PaymentRequest>(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_point_handles_garbage_and_real_headers() {
        decode_untrusted_headers(b"");
        decode_untrusted_headers(b"\xff\xfe not base64");
        decode_untrusted_headers(b"e30=");
        let payment = include_str!("../../../testdata/fuzz-seed-payment-signature.txt");
        decode_untrusted_headers(payment.trim().as_bytes());
        assert!(decode_header::<PaymentPayload>(payment.trim().as_bytes()).is_ok());
    }
}
