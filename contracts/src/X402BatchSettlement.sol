// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Signatures} from "./Signatures.sol";

/// @title x402 batch settlement (payment channels)
/// @notice An escrow for the x402 `batch-settlement` scheme. A payer deposits once into a
///         channel (through a deposit collector, so the deposit can be gasless), then signs a
///         cumulative EIP-712 voucher per request; the receiver claims the latest vouchers of
///         many channels in one transaction and settles what it claimed to itself in another.
///         A payer gets unclaimed funds back through a cooperative refund from the receiver's
///         side, or by a withdrawal that waits the channel's delay (during which the receiver
///         can still claim).
///
///         Its external interface (function selectors, argument encodings, the `Settled` event
///         and the EIP-712 types) matches what the official x402 SDKs (`@x402/evm` 2.27) call
///         and sign, so an official client, server or facilitator works against it.
/// @dev Written for a local chain: the runtime code is dropped at the canonical address with
///      `anvil_setCode`, where no constructor runs. So there is no constructor and no
///      immutable; the EIP-712 domain is rebuilt from `address(this)` and the chain id on
///      every use, and the reentrancy lock lives in transient storage (EIP-1153).
///
///      Accounting: a channel's `balance` is what is escrowed for it (deposits less
///      withdrawals and refunds) and `totalClaimed` the part of it already credited to the
///      receiver, so `balance - totalClaimed` is what the payer can still get back. A
///      receiver's `totalClaimed - totalSettled` (per token) is what `settle` pays out. The
///      token held by this contract is the sum of channel balances less what was settled.

/// Who pays, who is paid, in what, and the rules of one channel. Its EIP-712 hash is the
/// channel id.
struct ChannelConfig {
    address payer;
    /// A key allowed to sign vouchers and withdraw for the payer (zero: the payer itself
    /// signs, as an EOA or an ERC-1271 wallet).
    address payerAuthorizer;
    address receiver;
    /// The key that signs claim batches and refunds for the receiver (never zero).
    address receiverAuthorizer;
    address token;
    /// Seconds between the start of a withdrawal and the moment it can be finalized.
    uint40 withdrawDelay;
    /// Distinguishes parallel channels of the same parties.
    bytes32 salt;
}

/// A voucher as claimed: the channel it is for, and the most the receiver may have claimed
/// from it in total.
struct Voucher {
    ChannelConfig channel;
    uint128 maxClaimableAmount;
}

/// One row of a claim: the payer's voucher, its signature, and the new cumulative amount
/// claimed from the channel (at most the voucher's ceiling).
struct VoucherClaim {
    Voucher voucher;
    bytes signature;
    uint128 totalClaimed;
}

/// A channel's escrow.
struct ChannelState {
    uint128 balance;
    uint128 totalClaimed;
}

/// A withdrawal the payer started.
struct PendingWithdrawal {
    uint128 amount;
    uint40 initiatedAt;
}

/// What a receiver has claimed and been paid, in one token, over all its channels.
struct ReceiverState {
    uint128 totalClaimed;
    uint128 totalSettled;
}

/// What a deposit collector does: move `amount` of `token` from `payer` to the batch
/// contract, authorized by `collectorData` (bound to `channelId`).
interface IDepositCollector {
    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata collectorData)
        external;
}

/// The ERC-20 calls the contracts make.
interface IERC20Minimal {
    function balanceOf(address account) external view returns (uint256);
    function transfer(address to, uint256 value) external returns (bool);
}

/// ERC-20 transfers that tolerate tokens returning nothing.
library TokenTransfers {
    error TokenTransferFailed();

    /// Transfers `value` of `token` to `to`, or reverts; refuses an address without code
    /// (where a call "succeeds" having done nothing).
    function send(address token, address to, uint256 value) internal {
        if (token.code.length == 0) revert TokenTransferFailed();
        (bool ok, bytes memory answer) = token.call(abi.encodeCall(IERC20Minimal.transfer, (to, value)));
        if (!ok || (answer.length != 0 && !abi.decode(answer, (bool)))) revert TokenTransferFailed();
    }
}

/// @notice The escrow (`x402BatchSettlement` in the SDKs).
contract X402BatchSettlement {
    // ---- EIP-712 ----

    bytes32 private constant EIP712_DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("x402 Batch Settlement");
    bytes32 private constant VERSION_HASH = keccak256("1");

    bytes32 public constant CHANNEL_CONFIG_TYPEHASH = keccak256(
        "ChannelConfig(address payer,address payerAuthorizer,address receiver,address receiverAuthorizer,address token,uint40 withdrawDelay,bytes32 salt)"
    );
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint128 maxClaimableAmount)");
    bytes32 public constant REFUND_TYPEHASH = keccak256("Refund(bytes32 channelId,uint256 nonce,uint128 amount)");
    bytes32 public constant CLAIM_ENTRY_TYPEHASH =
        keccak256("ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)");
    bytes32 public constant CLAIM_BATCH_TYPEHASH = keccak256(
        "ClaimBatch(ClaimEntry[] claims)ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)"
    );

    /// The shortest and longest withdrawal delays a channel may have (15 minutes, 30 days).
    uint40 public constant MIN_WITHDRAW_DELAY = 900;
    uint40 public constant MAX_WITHDRAW_DELAY = 2_592_000;

    // ---- State ----

    mapping(bytes32 channelId => ChannelState) public channels;
    mapping(bytes32 channelId => PendingWithdrawal) public pendingWithdrawals;
    mapping(address receiver => mapping(address token => ReceiverState)) public receivers;
    /// The nonce the next signed refund of a channel must carry.
    mapping(bytes32 channelId => uint256) public refundNonce;

    /// Set while a state-changing call runs.
    bool private transient locked;

    // ---- Events ----

    /// `amount` of `token` claimed by `receiver` was paid to it; `sender` sent the transaction.
    event Settled(address indexed receiver, address indexed token, address indexed sender, uint128 amount);
    event Deposited(bytes32 indexed channelId, address indexed payer, address indexed collector, uint128 amount);
    event Claimed(bytes32 indexed channelId, address indexed receiver, uint128 amount, uint128 totalClaimed);
    event WithdrawInitiated(bytes32 indexed channelId, uint128 amount, uint40 initiatedAt);
    event Withdrawn(bytes32 indexed channelId, address indexed payer, uint128 amount);
    event Refunded(bytes32 indexed channelId, address indexed payer, uint128 amount);

    // ---- Errors ----

    error ReentrantCall();
    /// A zero payer, receiver, receiver authorizer or token.
    error InvalidChannelConfig();
    error WithdrawDelayOutOfRange(uint40 withdrawDelay);
    error ZeroAmount();
    /// The collector did not leave exactly the deposited amount here.
    error DepositNotReceived(uint256 expected, uint256 received);
    error NotReceiverOrAuthorizer();
    error NotPayerOrAuthorizer();
    error NoClaims();
    /// The rows of a signed claim batch name different receiver authorizers.
    error MixedReceiverAuthorizers();
    error InvalidAuthorizerSignature();
    error InvalidVoucherSignature(bytes32 channelId);
    error ClaimExceedsCeiling(bytes32 channelId, uint128 totalClaimed, uint128 maxClaimableAmount);
    error ClaimExceedsBalance(bytes32 channelId, uint128 totalClaimed, uint128 balance);
    error WithdrawExceedsAvailable(uint128 amount, uint128 available);
    error NoPendingWithdrawal();
    error WithdrawDelayNotElapsed(uint256 finalizableAt);
    error InvalidRefundNonce(uint256 expected, uint256 given);
    error MulticallFailed();

    modifier nonReentrant() {
        if (locked) revert ReentrantCall();
        locked = true;
        _;
        locked = false;
    }

    // ---- Deposits ----

    /// @notice Escrows `amount` into the channel of `config`, moved from the payer by
    ///         `collector` with the authorization in `collectorData`. Anyone may submit it: the
    ///         authorization is the payer's and binds the channel.
    function deposit(ChannelConfig calldata config, uint128 amount, address collector, bytes calldata collectorData)
        external
        nonReentrant
    {
        checkConfig(config);
        if (amount == 0) revert ZeroAmount();
        bytes32 channelId = getChannelId(config);
        IERC20Minimal token = IERC20Minimal(config.token);
        uint256 before = token.balanceOf(address(this));
        channels[channelId].balance += amount;
        IDepositCollector(collector).collect(config.payer, config.token, amount, channelId, collectorData);
        uint256 received = token.balanceOf(address(this)) - before;
        if (received != amount) revert DepositNotReceived(amount, received);
        emit Deposited(channelId, config.payer, collector, amount);
    }

    // ---- Claims and settlement ----

    /// @notice Claims vouchers; the caller must be each row's receiver or receiver authorizer.
    function claim(VoucherClaim[] calldata voucherClaims) external nonReentrant {
        if (voucherClaims.length == 0) revert NoClaims();
        for (uint256 i = 0; i < voucherClaims.length; i++) {
            ChannelConfig calldata config = voucherClaims[i].voucher.channel;
            if (msg.sender != config.receiver && msg.sender != config.receiverAuthorizer) {
                revert NotReceiverOrAuthorizer();
            }
            claimOne(voucherClaims[i]);
        }
    }

    /// @notice Claims vouchers with the receiver authorizer's signature of the batch (its
    ///         `ClaimBatch` digest); anyone may submit it. Every row must name the same
    ///         receiver authorizer.
    function claimWithSignature(VoucherClaim[] calldata voucherClaims, bytes calldata authorizerSignature)
        external
        nonReentrant
    {
        if (voucherClaims.length == 0) revert NoClaims();
        address authorizer = voucherClaims[0].voucher.channel.receiverAuthorizer;
        for (uint256 i = 1; i < voucherClaims.length; i++) {
            if (voucherClaims[i].voucher.channel.receiverAuthorizer != authorizer) revert MixedReceiverAuthorizers();
        }
        if (!Signatures.isValidNow(authorizer, getClaimBatchDigest(voucherClaims), authorizerSignature)) {
            revert InvalidAuthorizerSignature();
        }
        for (uint256 i = 0; i < voucherClaims.length; i++) {
            claimOne(voucherClaims[i]);
        }
    }

    /// Raises a channel's claimed total to the row's, within the voucher's ceiling and the
    /// balance, and credits the difference to the receiver. A row at or below what was
    /// already claimed changes nothing (vouchers are cumulative: an old one is spent).
    function claimOne(VoucherClaim calldata row) private {
        ChannelConfig calldata config = row.voucher.channel;
        bytes32 channelId = getChannelId(config);
        ChannelState storage channel = channels[channelId];
        uint128 already = channel.totalClaimed;
        uint128 total = row.totalClaimed;
        if (total <= already) return;
        uint128 ceiling = row.voucher.maxClaimableAmount;
        if (total > ceiling) revert ClaimExceedsCeiling(channelId, total, ceiling);
        if (total > channel.balance) revert ClaimExceedsBalance(channelId, total, channel.balance);
        if (!voucherSignedByPayer(config, getVoucherDigest(channelId, ceiling), row.signature)) {
            revert InvalidVoucherSignature(channelId);
        }
        uint128 delta = total - already;
        channel.totalClaimed = total;
        receivers[config.receiver][config.token].totalClaimed += delta;
        emit Claimed(channelId, config.receiver, delta, total);
    }

    /// Whether the channel's payer side signed `digest`: its payer authorizer's key when it has
    /// one, else the payer (an EOA or an ERC-1271 wallet).
    function voucherSignedByPayer(ChannelConfig calldata config, bytes32 digest, bytes calldata signature)
        private
        view
        returns (bool)
    {
        if (config.payerAuthorizer != address(0)) {
            return Signatures.recover(digest, signature) == config.payerAuthorizer;
        }
        return Signatures.isValidNow(config.payer, digest, signature);
    }

    /// @notice Pays `receiver` everything it has claimed in `token` and not yet been paid.
    ///         Anyone may call it; nothing happens when nothing is owed.
    function settle(address receiver, address token) external nonReentrant {
        ReceiverState storage state = receivers[receiver][token];
        uint128 amount = state.totalClaimed - state.totalSettled;
        if (amount == 0) return;
        state.totalSettled = state.totalClaimed;
        TokenTransfers.send(token, receiver, amount);
        emit Settled(receiver, token, msg.sender, amount);
    }

    // ---- Withdrawals (the payer's way out, after the delay) ----

    /// @notice Starts (or restarts, with a new amount and a new clock) a withdrawal of at most
    ///         what is unclaimed. Payer or payer authorizer only.
    function initiateWithdraw(ChannelConfig calldata config, uint128 amount) external nonReentrant {
        onlyPayerSide(config);
        if (amount == 0) revert ZeroAmount();
        bytes32 channelId = getChannelId(config);
        uint128 free = available(channelId);
        if (amount > free) revert WithdrawExceedsAvailable(amount, free);
        uint40 now_ = uint40(block.timestamp);
        pendingWithdrawals[channelId] = PendingWithdrawal({amount: amount, initiatedAt: now_});
        emit WithdrawInitiated(channelId, amount, now_);
    }

    /// @notice Once the delay has passed, pays the payer the withdrawal, capped at what is
    ///         still unclaimed (the receiver may have claimed meanwhile).
    function finalizeWithdraw(ChannelConfig calldata config) external nonReentrant {
        onlyPayerSide(config);
        bytes32 channelId = getChannelId(config);
        PendingWithdrawal memory pending = pendingWithdrawals[channelId];
        if (pending.initiatedAt == 0) revert NoPendingWithdrawal();
        uint256 finalizableAt = uint256(pending.initiatedAt) + config.withdrawDelay;
        if (block.timestamp < finalizableAt) revert WithdrawDelayNotElapsed(finalizableAt);
        delete pendingWithdrawals[channelId];
        uint128 amount = min(pending.amount, available(channelId));
        if (amount == 0) return;
        channels[channelId].balance -= amount;
        TokenTransfers.send(config.token, config.payer, amount);
        emit Withdrawn(channelId, config.payer, amount);
    }

    // ---- Refunds (the receiver side gives unclaimed funds back at once) ----

    /// @notice Returns up to `amount` of the unclaimed balance to the payer. Receiver or
    ///         receiver authorizer only.
    function refund(ChannelConfig calldata config, uint128 amount) external nonReentrant {
        if (msg.sender != config.receiver && msg.sender != config.receiverAuthorizer) {
            revert NotReceiverOrAuthorizer();
        }
        payRefund(config, getChannelId(config), amount);
    }

    /// @notice The same with the receiver authorizer's `Refund` signature for the channel's
    ///         current refund nonce; anyone may submit it. The nonce is used up even when
    ///         nothing is left to refund, so a signature works once.
    function refundWithSignature(
        ChannelConfig calldata config,
        uint128 amount,
        uint256 nonce,
        bytes calldata receiverAuthorizerSignature
    ) external nonReentrant {
        bytes32 channelId = getChannelId(config);
        uint256 expected = refundNonce[channelId];
        if (nonce != expected) revert InvalidRefundNonce(expected, nonce);
        refundNonce[channelId] = expected + 1;
        bytes32 digest = getRefundDigest(channelId, nonce, amount);
        if (!Signatures.isValidNow(config.receiverAuthorizer, digest, receiverAuthorizerSignature)) {
            revert InvalidAuthorizerSignature();
        }
        payRefund(config, channelId, amount);
    }

    /// Pays the payer `amount` capped at the unclaimed balance, and shrinks a pending
    /// withdrawal by what was refunded (cancelling it when nothing of it is left).
    function payRefund(ChannelConfig calldata config, bytes32 channelId, uint128 amount) private {
        uint128 paid = min(amount, available(channelId));
        if (paid == 0) return;
        channels[channelId].balance -= paid;
        PendingWithdrawal storage pending = pendingWithdrawals[channelId];
        if (pending.initiatedAt != 0) {
            uint128 left = pending.amount > paid ? pending.amount - paid : 0;
            left = min(left, available(channelId));
            if (left == 0) delete pendingWithdrawals[channelId];
            else pending.amount = left;
        }
        TokenTransfers.send(config.token, config.payer, paid);
        emit Refunded(channelId, config.payer, paid);
    }

    // ---- Batching ----

    /// @notice Runs several calls of this contract in one transaction, as the caller; one
    ///         failure reverts them all with its reason.
    function multicall(bytes[] calldata data) external returns (bytes[] memory results) {
        results = new bytes[](data.length);
        for (uint256 i = 0; i < data.length; i++) {
            (bool ok, bytes memory answer) = address(this).delegatecall(data[i]);
            if (!ok) {
                if (answer.length == 0) revert MulticallFailed();
                assembly ("memory-safe") {
                    revert(add(answer, 0x20), mload(answer))
                }
            }
            results[i] = answer;
        }
    }

    // ---- Views ----

    /// @notice The EIP-712 domain separator ("x402 Batch Settlement", "1", this chain, this
    ///         address).
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(abi.encode(EIP712_DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// @notice A channel's id: the EIP-712 hash of its config under this contract's domain.
    function getChannelId(ChannelConfig calldata config) public view returns (bytes32) {
        return typedDataHash(
            keccak256(
                abi.encode(
                    CHANNEL_CONFIG_TYPEHASH,
                    config.payer,
                    config.payerAuthorizer,
                    config.receiver,
                    config.receiverAuthorizer,
                    config.token,
                    config.withdrawDelay,
                    config.salt
                )
            )
        );
    }

    /// @notice What a payer signs for a voucher.
    function getVoucherDigest(bytes32 channelId, uint128 maxClaimableAmount) public view returns (bytes32) {
        return typedDataHash(keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, maxClaimableAmount)));
    }

    /// @notice What a receiver authorizer signs for a refund.
    function getRefundDigest(bytes32 channelId, uint256 nonce, uint128 amount) public view returns (bytes32) {
        return typedDataHash(keccak256(abi.encode(REFUND_TYPEHASH, channelId, nonce, amount)));
    }

    /// @notice What a receiver authorizer signs for a batch of claims: a `ClaimBatch` of one
    ///         `ClaimEntry` (channel id, ceiling, new total) per row.
    function getClaimBatchDigest(VoucherClaim[] calldata voucherClaims) public view returns (bytes32) {
        bytes32[] memory entries = new bytes32[](voucherClaims.length);
        for (uint256 i = 0; i < voucherClaims.length; i++) {
            VoucherClaim calldata row = voucherClaims[i];
            entries[i] = keccak256(
                abi.encode(
                    CLAIM_ENTRY_TYPEHASH,
                    getChannelId(row.voucher.channel),
                    row.voucher.maxClaimableAmount,
                    row.totalClaimed
                )
            );
        }
        return typedDataHash(keccak256(abi.encode(CLAIM_BATCH_TYPEHASH, keccak256(abi.encodePacked(entries)))));
    }

    // ---- Internals ----

    function typedDataHash(bytes32 structHash) private view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", DOMAIN_SEPARATOR(), structHash));
    }

    /// What the payer could still get back: the balance less what was claimed.
    function available(bytes32 channelId) private view returns (uint128) {
        ChannelState storage channel = channels[channelId];
        return channel.balance - channel.totalClaimed;
    }

    function checkConfig(ChannelConfig calldata config) private pure {
        if (
            config.payer == address(0) || config.receiver == address(0) || config.receiverAuthorizer == address(0)
                || config.token == address(0)
        ) revert InvalidChannelConfig();
        if (config.withdrawDelay < MIN_WITHDRAW_DELAY || config.withdrawDelay > MAX_WITHDRAW_DELAY) {
            revert WithdrawDelayOutOfRange(config.withdrawDelay);
        }
    }

    function onlyPayerSide(ChannelConfig calldata config) private view {
        // msg.sender is never zero, so a channel without a payer authorizer admits the payer alone.
        if (msg.sender != config.payer && msg.sender != config.payerAuthorizer) revert NotPayerOrAuthorizer();
    }

    function min(uint128 a, uint128 b) private pure returns (uint128) {
        return a < b ? a : b;
    }
}
