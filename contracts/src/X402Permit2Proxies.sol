// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title x402 Permit2 proxies
/// @notice Two small contracts through which an x402 facilitator moves a payer's tokens with a
///         Permit2 signature transfer whose witness binds the payee (and, for `upto`, the
///         facilitator allowed to submit it and the amount settled). Their external interface
///         (function selectors, argument encodings, events, custom errors and the witness
///         types) matches what the official x402 SDKs (`@x402/evm` 2.27) call, so an official
///         client's payload settles through them.
/// @dev Written for a local chain: the runtime code is dropped at the canonical addresses with
///      `anvil_setCode`, where no constructor runs, so Permit2's address is a constant and
///      the reentrancy lock lives in a storage slot that starts at zero.

/// The token and the most Permit2 may move of it.
struct TokenPermissions {
    address token;
    uint256 amount;
}

/// What the payer signed, less the spender and witness (Permit2 adds those to the digest).
struct PermitTransferFrom {
    TokenPermissions permitted;
    uint256 nonce;
    uint256 deadline;
}

/// Where the tokens go, and how many.
struct SignatureTransferDetails {
    address to;
    uint256 requestedAmount;
}

/// An EIP-2612 approval of Permit2 to try first (gas sponsoring: the payer has no allowance).
struct Eip2612Permit {
    uint256 value;
    uint256 deadline;
    bytes32 r;
    bytes32 s;
    uint8 v;
}

/// The part of Permit2 the proxies use.
interface IPermit2WitnessTransfer {
    function permitWitnessTransferFrom(
        PermitTransferFrom calldata permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external;
}

/// EIP-2612 `permit`, as USDC serves it.
interface IEip2612 {
    function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external;
}

/// What both proxies share: Permit2's address, the lock, the checks on owner and payee, the
/// optional EIP-2612 approval, and the call into Permit2.
abstract contract X402Permit2ProxyBase {
    /// Permit2 at its canonical address (the same on every chain).
    address public constant PERMIT2 = 0x000000000022D473030F116dDEE9F6B43aC78BA3;

    /// A settlement went through.
    event Settled();
    /// A settlement that carried an EIP-2612 approval went through.
    event SettledWithPermit();
    /// The EIP-2612 approval carried with a settlement failed (it may have been used already);
    /// the settlement went on with whatever allowance Permit2 has.
    event Eip2612PermitSkipped(address token, address owner);

    error InvalidAmount();
    error InvalidDestination();
    error InvalidOwner();
    error InvalidPermit2Address();
    error PaymentTooEarly();
    error Permit2612AmountMismatch();
    error ReentrancyGuardReentrantCall();

    /// How every witness type string handed to Permit2 starts: the witness field, and the
    /// permit's token type (Permit2 appends the rest of its own type).
    string internal constant WITNESS_TYPE_PREFIX = "Witness witness)TokenPermissions(address token,uint256 amount)";

    /// 1 while a settlement runs.
    uint256 private locked;

    /// The witness's EIP-712 type, `Witness(…)`.
    function witnessType() internal pure virtual returns (string memory);

    /// The EIP-712 type hash of the witness.
    function WITNESS_TYPEHASH() public pure returns (bytes32) {
        return keccak256(bytes(witnessType()));
    }

    /// The witness type string Permit2 hashes the payer's signature with.
    function WITNESS_TYPE_STRING() public pure returns (string memory) {
        return string.concat(WITNESS_TYPE_PREFIX, witnessType());
    }

    modifier oneAtATime() {
        if (locked == 1) revert ReentrancyGuardReentrantCall();
        locked = 1;
        _;
        locked = 0;
    }

    /// Refuses a zero owner or payee, and a payment before its `validAfter`.
    function checkParties(address owner, address to, uint256 validAfter) internal view {
        if (owner == address(0)) revert InvalidOwner();
        if (to == address(0)) revert InvalidDestination();
        if (block.timestamp < validAfter) revert PaymentTooEarly();
    }

    /// Tries the payer's EIP-2612 approval of Permit2 for exactly the permitted amount; a
    /// failure is logged and ignored (the settlement then needs an allowance already there).
    function tryEip2612(Eip2612Permit calldata approval, PermitTransferFrom calldata permit, address owner)
        internal
    {
        if (approval.value != permit.permitted.amount) revert Permit2612AmountMismatch();
        try IEip2612(permit.permitted.token).permit(
            owner, PERMIT2, approval.value, approval.deadline, approval.v, approval.r, approval.s
        ) {} catch {
            emit Eip2612PermitSkipped(permit.permitted.token, owner);
        }
    }

    /// Moves `amount` of the permitted token from `owner` to `to` with the payer's signature
    /// over `witness` (a hash of the witness struct typed by `witnessTypeString`).
    function transfer(
        PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        address to,
        bytes32 witness,
        string memory witnessTypeString,
        bytes calldata signature
    ) internal {
        IPermit2WitnessTransfer(PERMIT2).permitWitnessTransferFrom(
            permit, SignatureTransferDetails({to: to, requestedAmount: amount}), owner, witness, witnessTypeString, signature
        );
    }
}

/// The payee and the earliest time, bound into an `exact` payment's signature.
struct ExactWitness {
    address to;
    uint256 validAfter;
}

/// @notice `exact` with Permit2: moves exactly the permitted amount to the witnessed payee.
contract X402ExactPermit2Proxy is X402Permit2ProxyBase {
    function witnessType() internal pure override returns (string memory) {
        return "Witness(address to,uint256 validAfter)";
    }

    function settle(
        PermitTransferFrom calldata permit,
        address owner,
        ExactWitness calldata witness,
        bytes calldata signature
    ) external oneAtATime {
        pay(permit, owner, witness, signature);
        emit Settled();
    }

    function settleWithPermit(
        Eip2612Permit calldata permit2612,
        PermitTransferFrom calldata permit,
        address owner,
        ExactWitness calldata witness,
        bytes calldata signature
    ) external oneAtATime {
        tryEip2612(permit2612, permit, owner);
        pay(permit, owner, witness, signature);
        emit SettledWithPermit();
    }

    function pay(PermitTransferFrom calldata permit, address owner, ExactWitness calldata witness, bytes calldata signature)
        private
    {
        checkParties(owner, witness.to, witness.validAfter);
        if (permit.permitted.amount == 0) revert InvalidAmount();
        bytes32 hashed = keccak256(abi.encode(WITNESS_TYPEHASH(), witness.to, witness.validAfter));
        transfer(permit, permit.permitted.amount, owner, witness.to, hashed, WITNESS_TYPE_STRING(), signature);
    }
}

/// The payee, the one facilitator allowed to submit, and the earliest time, bound into an
/// `upto` payment's signature.
struct UptoWitness {
    address to;
    address facilitator;
    uint256 validAfter;
}

/// @notice `upto` with Permit2: the witnessed facilitator moves any amount up to the permitted
///         one (the usage it settles) to the witnessed payee.
contract X402UptoPermit2Proxy is X402Permit2ProxyBase {
    function witnessType() internal pure override returns (string memory) {
        return "Witness(address to,address facilitator,uint256 validAfter)";
    }

    error AmountExceedsPermitted();
    error UnauthorizedFacilitator();

    function settle(
        PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        UptoWitness calldata witness,
        bytes calldata signature
    ) external oneAtATime {
        pay(permit, amount, owner, witness, signature);
        emit Settled();
    }

    function settleWithPermit(
        Eip2612Permit calldata permit2612,
        PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        UptoWitness calldata witness,
        bytes calldata signature
    ) external oneAtATime {
        tryEip2612(permit2612, permit, owner);
        pay(permit, amount, owner, witness, signature);
        emit SettledWithPermit();
    }

    function pay(
        PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        UptoWitness calldata witness,
        bytes calldata signature
    ) private {
        checkParties(owner, witness.to, witness.validAfter);
        if (msg.sender != witness.facilitator) revert UnauthorizedFacilitator();
        if (amount == 0) revert InvalidAmount();
        if (amount > permit.permitted.amount) revert AmountExceedsPermitted();
        bytes32 hashed = keccak256(abi.encode(WITNESS_TYPEHASH(), witness.to, witness.facilitator, witness.validAfter));
        transfer(permit, amount, owner, witness.to, hashed, WITNESS_TYPE_STRING(), signature);
    }
}
