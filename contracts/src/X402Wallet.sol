// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title X402Wallet
/// @notice The smallest smart-contract wallet that can pay through x402: one
///         owner key, ERC-1271 signature checks, and an owner-only `execute`.
///         It is a test fixture for facilitators, not a wallet to hold money in.
/// @dev A signature is valid when it is a 65-byte r || s || v ECDSA signature
///      by the owner over exactly the hash asked about (no extra wrapping), so
///      a client signs the EIP-712 digest of a payment with the owner key.
///      A wallet whose owner is some other key refuses every such signature.
contract X402Wallet {
    /// Value `isValidSignature` returns for a signature it accepts (ERC-1271).
    bytes4 private constant ERC1271_MAGIC_VALUE = 0x1626ba7e;

    /// Value it returns for one it refuses.
    bytes4 private constant ERC1271_REFUSED = 0xffffffff;

    /// Half the secp256k1 group order: larger `s` values are the malleable twin.
    uint256 private constant MAX_S = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// The key that controls the wallet.
    address public owner;

    constructor(address owner_) {
        require(owner_ != address(0), "X402Wallet: zero owner");
        owner = owner_;
    }

    /// @notice ERC-1271: whether the owner signed `hash`.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        if (signature.length != 65) return ERC1271_REFUSED;
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > MAX_S || (v != 27 && v != 28)) return ERC1271_REFUSED;
        address signer = ecrecover(hash, v, r, s);
        return signer != address(0) && signer == owner ? ERC1271_MAGIC_VALUE : ERC1271_REFUSED;
    }

    /// @notice Makes a call from the wallet (for example a token transfer); owner only.
    function execute(address target, uint256 value, bytes calldata data) external returns (bytes memory) {
        require(msg.sender == owner, "X402Wallet: caller is not the owner");
        (bool ok, bytes memory result) = target.call{value: value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(result, 0x20), mload(result))
            }
        }
        return result;
    }

    receive() external payable {}
}
