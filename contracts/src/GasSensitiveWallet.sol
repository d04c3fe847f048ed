// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Signatures} from "./Signatures.sol";

/// @title GasSensitiveWallet
/// @notice A test fixture for facilitators, not a wallet to hold money in: an ERC-1271
///         wallet that accepts its owner's signature only while more than `minGasLeft` gas
///         is left. A node's `eth_call` without a gas limit runs with the block's gas limit,
///         so the check passes there; inside a settlement transaction with a realistic gas
///         limit it fails. A facilitator that simulates with another gas limit than it sends
///         verifies a payment whose settlement then reverts.
/// @dev Placed with `anvil_setCode` (no constructor runs): `initialize` sets the owner and
///      the threshold once and approves Permit2 for a token on the wallet's behalf.
contract GasSensitiveWallet {
    /// Uniswap's Permit2, the same on every chain.
    address private constant PERMIT2 = 0x000000000022D473030F116dDEE9F6B43aC78BA3;

    /// The key whose signatures the wallet accepts.
    address public owner;

    /// The gas that must be left when a signature is checked.
    uint256 public minGasLeft;

    /// @notice Sets the owner and the threshold (once), and approves Permit2 to move any
    ///         amount of `token` from the wallet.
    function initialize(address owner_, uint256 minGasLeft_, address token) external {
        require(owner == address(0), "GasSensitiveWallet: initialized");
        require(owner_ != address(0), "GasSensitiveWallet: zero owner");
        owner = owner_;
        minGasLeft = minGasLeft_;
        (bool ok, bytes memory result) =
            token.call(abi.encodeWithSignature("approve(address,uint256)", PERMIT2, type(uint256).max));
        require(ok && (result.length == 0 || abi.decode(result, (bool))), "GasSensitiveWallet: approve failed");
    }

    /// @notice ERC-1271: whether the owner signed `hash` (65-byte r || s || v over exactly
    ///         `hash`, as `Signatures.recover` reads it), judged only while more than
    ///         `minGasLeft` gas is left.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        bool accepted = gasleft() > minGasLeft && Signatures.recover(hash, signature) == owner;
        return accepted ? bytes4(0x1626ba7e) : bytes4(0xffffffff);
    }
}
