// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Deposit collectors of the x402 batch settlement
/// @notice Two small contracts the escrow (`X402BatchSettlement`) calls during a deposit to move
///         the payer's tokens into it with the payer's signature instead of a transaction of
///         the payer's: one with an EIP-3009 `receiveWithAuthorization`, one with a Permit2
///         signature transfer whose witness is the channel id. Their `collectorData`
///         encodings, nonce derivation and witness type are the ones the official x402 SDKs
///         (`@x402/evm` 2.27) build and sign.
/// @dev Written for a local chain: the runtime code is dropped at the canonical addresses with
///      `anvil_setCode`, where no constructor runs, so the escrow's and Permit2's addresses are
///      constants (the canonical ones), not constructor arguments.

import {
    IEip2612,
    IPermit2WitnessTransfer,
    PermitTransferFrom,
    SignatureTransferDetails,
    TokenPermissions
} from "./X402Permit2Proxies.sol";
import {IDepositCollector, TokenTransfers} from "./X402BatchSettlement.sol";

/// EIP-3009's receive variant with the signature as bytes (ECDSA or ERC-1271 payers).
interface IReceiveWithAuthorization {
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external;
}

/// What both collectors share: the escrow's address, and that only it may call them.
abstract contract DepositCollectorBase is IDepositCollector {
    /// The escrow at its canonical address (the same on every chain).
    address public constant BATCH_SETTLEMENT = 0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003;

    error OnlyBatchSettlement();

    modifier onlyBatchSettlement() {
        if (msg.sender != BATCH_SETTLEMENT) revert OnlyBatchSettlement();
        _;
    }
}

/// @notice Deposits by EIP-3009: the payer signs a `ReceiveWithAuthorization` to this collector
///         whose nonce is `keccak256(abi.encode(channelId, salt))`, so the authorization is
///         good for one channel only.
///         `collectorData = abi.encode(uint256 validAfter, uint256 validBefore, uint256 salt, bytes signature)`.
contract ERC3009DepositCollector is DepositCollectorBase {
    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata collectorData)
        external
        onlyBatchSettlement
    {
        (uint256 validAfter, uint256 validBefore, uint256 salt, bytes memory signature) =
            abi.decode(collectorData, (uint256, uint256, uint256, bytes));
        bytes32 nonce = depositNonce(channelId, salt);
        IReceiveWithAuthorization(token).receiveWithAuthorization(
            payer, address(this), amount, validAfter, validBefore, nonce, signature
        );
        TokenTransfers.send(token, msg.sender, amount);
    }

    /// @notice The EIP-3009 nonce a payer signs for a deposit into `channelId`.
    function depositNonce(bytes32 channelId, uint256 salt) public pure returns (bytes32) {
        return keccak256(abi.encode(channelId, salt));
    }
}

/// @notice Deposits by Permit2: the payer signs a `PermitWitnessTransferFrom` for exactly the
///         deposit, with this collector as spender and `DepositWitness(bytes32 channelId)` as
///         witness; Permit2 moves the tokens straight into the escrow. An EIP-2612 approval of
///         Permit2 may come along for a payer without an allowance.
///         `collectorData = abi.encode(uint256 nonce, uint256 deadline, bytes permit2Signature, bytes eip2612)`,
///         `eip2612` empty or `abi.encode(uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)`.
contract Permit2DepositCollector is DepositCollectorBase {
    /// Permit2 at its canonical address (the same on every chain).
    address public constant PERMIT2 = 0x000000000022D473030F116dDEE9F6B43aC78BA3;

    bytes32 public constant DEPOSIT_WITNESS_TYPEHASH = keccak256("DepositWitness(bytes32 channelId)");
    /// The witness part of the type Permit2 hashes the payer's signature with.
    string public constant WITNESS_TYPE_STRING =
        "DepositWitness witness)DepositWitness(bytes32 channelId)TokenPermissions(address token,uint256 amount)";

    error Eip2612AmountMismatch();
    /// The EIP-2612 approval failed (it may have been used already); the deposit went on with
    /// whatever allowance Permit2 has.
    event Eip2612PermitSkipped(address token, address owner);

    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata collectorData)
        external
        onlyBatchSettlement
    {
        (uint256 nonce, uint256 deadline, bytes memory signature, bytes memory eip2612) =
            abi.decode(collectorData, (uint256, uint256, bytes, bytes));
        if (eip2612.length > 0) tryEip2612(payer, token, amount, eip2612);
        IPermit2WitnessTransfer(PERMIT2).permitWitnessTransferFrom(
            PermitTransferFrom({permitted: TokenPermissions({token: token, amount: amount}), nonce: nonce, deadline: deadline}),
            SignatureTransferDetails({to: msg.sender, requestedAmount: amount}),
            payer,
            keccak256(abi.encode(DEPOSIT_WITNESS_TYPEHASH, channelId)),
            WITNESS_TYPE_STRING,
            signature
        );
    }

    /// Tries the payer's EIP-2612 approval of Permit2 for exactly the deposit; a failure is
    /// logged and ignored (someone may have submitted the approval first).
    function tryEip2612(address payer, address token, uint256 amount, bytes memory eip2612) private {
        (uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s) =
            abi.decode(eip2612, (uint256, uint256, uint8, bytes32, bytes32));
        if (value != amount) revert Eip2612AmountMismatch();
        try IEip2612(token).permit(payer, PERMIT2, value, deadline, v, r, s) {}
        catch {
            emit Eip2612PermitSkipped(token, payer);
        }
    }
}
