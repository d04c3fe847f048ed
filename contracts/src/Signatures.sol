// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Signatures
/// @notice How our contracts check who signed an EIP-712 digest: a 65-byte r || s || v ECDSA
///         signature by a key (low `s` only, so no malleable twin), or, for an address with
///         code, whatever its ERC-1271 `isValidSignature` accepts (the policy of USDC v2.2's
///         SignatureChecker).
library Signatures {
    /// Half the secp256k1 group order: larger `s` values are the malleable twin.
    uint256 private constant MAX_S = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// Value an ERC-1271 wallet returns when it accepts a signature.
    bytes4 private constant ERC1271_MAGIC_VALUE = 0x1626ba7e;

    /// The key that signed `digest`, or zero for anything malformed (wrong length, high `s`,
    /// `v` not 27 or 28) so that it can never equal a real signer.
    function recover(bytes32 digest, bytes memory signature) internal pure returns (address) {
        if (signature.length != 65) return address(0);
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
            v := byte(0, mload(add(signature, 0x60)))
        }
        if (uint256(s) > MAX_S || (v != 27 && v != 28)) return address(0);
        return ecrecover(digest, v, r, s);
    }

    /// Whether `signer` signed `digest`: a contract (smart wallet) decides for itself through
    /// ERC-1271; any other address must be the key that produced the signature.
    function isValidNow(address signer, bytes32 digest, bytes memory signature) internal view returns (bool) {
        if (signer.code.length > 0) {
            (bool success, bytes memory answer) =
                signer.staticcall(abi.encodeWithSignature("isValidSignature(bytes32,bytes)", digest, signature));
            return success && answer.length >= 32 && abi.decode(answer, (bytes32)) == bytes32(ERC1271_MAGIC_VALUE);
        }
        address recovered = recover(digest, signature);
        return recovered != address(0) && recovered == signer;
    }
}
