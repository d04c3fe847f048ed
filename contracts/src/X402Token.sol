// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Signatures} from "./Signatures.sol";

/// @title X402Token
/// @notice A small test token that looks like USDC (FiatToken v2.2) from the
///         outside: 6 decimals, the symbol "USDC", and EIP-3009 signed
///         transfers with the same function selectors, events and revert
///         strings. It exists so that x402 facilitators can be exercised on a
///         local chain.
/// @dev The runtime code must work when it is dropped at an arbitrary address
///      with `anvil_setCode`, where no constructor ever runs. Therefore:
///        * there are no immutables; everything configurable lives in storage
///          and is set by `initialize` (the constructor just calls it too);
///        * the EIP-712 domain separator is recomputed on every use from the
///          stored name/version, the current chain id and `address(this)`.
contract X402Token {
    // ---- Constants (compiled into the code, so they survive anvil_setCode) ----

    uint8 public constant decimals = 6;

    bytes32 private constant EIP712_DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");

    bytes32 public constant TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );

    bytes32 public constant RECEIVE_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );

    bytes32 public constant CANCEL_AUTHORIZATION_TYPEHASH =
        keccak256("CancelAuthorization(address authorizer,bytes32 nonce)");

    /// EIP-2612: an allowance granted by a signature instead of a transaction.
    bytes32 public constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");

    // ---- Storage (slot order is part of the contract: tests may poke it) ----

    string private _name; // slot 0
    string private _version; // slot 1
    address private _minter; // slot 2 (low 20 bytes)
    bool private _initialized; // slot 2 (byte 20)
    uint256 private _totalSupply; // slot 3
    mapping(address => uint256) private _balances; // slot 4
    mapping(address => mapping(address => uint256)) private _allowances; // slot 5
    mapping(address => mapping(bytes32 => bool)) private _authorizationStates; // slot 6
    mapping(address => uint256) private _permitNonces; // slot 7

    // ---- Events ----

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
    event AuthorizationCanceled(address indexed authorizer, bytes32 indexed nonce);

    // ---- Set-up ----

    constructor(string memory name_, string memory version_, address minter_) {
        _init(name_, version_, minter_);
    }

    /// @notice One-shot set-up for copies placed with `anvil_setCode`.
    ///         A normally deployed token is already initialized.
    function initialize(string calldata name_, string calldata version_, address minter_) external {
        _init(name_, version_, minter_);
    }

    function _init(string memory name_, string memory version_, address minter_) private {
        require(!_initialized, "X402Token: already initialized");
        _initialized = true;
        _name = name_;
        _version = version_;
        _minter = minter_;
    }

    // ---- Metadata ----

    function name() external view returns (string memory) {
        return _name;
    }

    function version() external view returns (string memory) {
        return _version;
    }

    function symbol() external pure returns (string memory) {
        return "USDC";
    }

    function minter() external view returns (address) {
        return _minter;
    }

    /// @notice EIP-712 domain separator for the current chain and address.
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return keccak256(
            abi.encode(
                EIP712_DOMAIN_TYPEHASH,
                keccak256(bytes(_name)),
                keccak256(bytes(_version)),
                block.chainid,
                address(this)
            )
        );
    }

    // ---- ERC-20 ----

    function totalSupply() external view returns (uint256) {
        return _totalSupply;
    }

    function balanceOf(address account) external view returns (uint256) {
        return _balances[account];
    }

    function allowance(address owner, address spender) external view returns (uint256) {
        return _allowances[owner][spender];
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _transfer(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        require(spender != address(0), "ERC20: approve to the zero address");
        _allowances[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    /// @dev Like USDC, an allowance of type(uint256).max is not treated as
    ///      infinite: every spend lowers it.
    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = _allowances[from][msg.sender];
        require(value <= allowed, "ERC20: transfer amount exceeds allowance");
        _transfer(from, to, value);
        _allowances[from][msg.sender] = allowed - value;
        return true;
    }

    // ---- EIP-2612 permits ----

    /// @notice The next permit nonce of `owner`: each permit uses one, in order.
    function nonces(address owner) external view returns (uint256) {
        return _permitNonces[owner];
    }

    /// @notice Sets `spender`'s allowance over `owner`'s tokens to `value`, by
    ///         `owner`'s signature of a Permit with the next nonce, until
    ///         `deadline` (`type(uint256).max` never expires).
    function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
    {
        _permit(owner, spender, value, deadline, abi.encodePacked(r, s, v));
    }

    /// @notice The same, with the signature as bytes: 65 bytes from a key, or
    ///         whatever an ERC-1271 wallet `owner` accepts.
    function permit(address owner, address spender, uint256 value, uint256 deadline, bytes memory signature)
        external
    {
        _permit(owner, spender, value, deadline, signature);
    }

    function _permit(address owner, address spender, uint256 value, uint256 deadline, bytes memory signature)
        private
    {
        require(deadline == type(uint256).max || deadline >= block.timestamp, "FiatTokenV2: permit is expired");
        require(spender != address(0), "ERC20: approve to the zero address");
        uint256 nonce = _permitNonces[owner];
        bytes32 structHash = keccak256(abi.encode(PERMIT_TYPEHASH, owner, spender, value, nonce, deadline));
        require(_isValidSignature(owner, structHash, signature), "EIP2612: invalid signature");
        _permitNonces[owner] = nonce + 1;
        _allowances[owner][spender] = value;
        emit Approval(owner, spender, value);
    }

    /// @notice Create new tokens; only the minter chosen at initialization may.
    function mint(address to, uint256 amount) external returns (bool) {
        require(msg.sender == _minter, "X402Token: caller is not the minter");
        require(to != address(0), "X402Token: mint to the zero address");
        _totalSupply += amount;
        _balances[to] += amount;
        emit Transfer(address(0), to, amount);
        return true;
    }

    function _transfer(address from, address to, uint256 value) private {
        require(from != address(0), "ERC20: transfer from the zero address");
        require(to != address(0), "ERC20: transfer to the zero address");
        uint256 fromBalance = _balances[from];
        require(value <= fromBalance, "ERC20: transfer amount exceeds balance");
        unchecked {
            // Cannot underflow (checked above) nor overflow (sum <= totalSupply).
            _balances[from] = fromBalance - value;
            _balances[to] += value;
        }
        emit Transfer(from, to, value);
    }

    // ---- EIP-3009: transfers authorized by a signature of the payer ----

    /// @notice True once `nonce` of `authorizer` has been used or canceled.
    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool) {
        return _authorizationStates[authorizer][nonce];
    }

    function transferWithAuthorization(
        address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce,
        uint8 v, bytes32 r, bytes32 s
    ) external {
        _authorizedTransfer(
            TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce,
            abi.encodePacked(r, s, v)
        );
    }

    function transferWithAuthorization(
        address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce,
        bytes memory signature
    ) external {
        _authorizedTransfer(
            TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce, signature
        );
    }

    /// @notice Like transferWithAuthorization, but only the payee may submit
    ///         it, so a third party cannot front-run a deposit into a contract.
    function receiveWithAuthorization(
        address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce,
        uint8 v, bytes32 r, bytes32 s
    ) external {
        require(to == msg.sender, "FiatTokenV2: caller must be the payee");
        _authorizedTransfer(
            RECEIVE_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce,
            abi.encodePacked(r, s, v)
        );
    }

    function receiveWithAuthorization(
        address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce,
        bytes memory signature
    ) external {
        require(to == msg.sender, "FiatTokenV2: caller must be the payee");
        _authorizedTransfer(
            RECEIVE_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce, signature
        );
    }

    /// @notice Burn an unused nonce so that its authorization can never run.
    function cancelAuthorization(address authorizer, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external {
        _cancelAuthorization(authorizer, nonce, abi.encodePacked(r, s, v));
    }

    function cancelAuthorization(address authorizer, bytes32 nonce, bytes memory signature) external {
        _cancelAuthorization(authorizer, nonce, signature);
    }

    /// @dev Shared body of the transfer/receive variants; they differ only in
    ///      the type hash the payer signed. Check order follows USDC: time
    ///      window, then nonce, then signature.
    function _authorizedTransfer(
        bytes32 typeHash, address from, address to, uint256 value, uint256 validAfter, uint256 validBefore,
        bytes32 nonce, bytes memory signature
    ) private {
        require(block.timestamp > validAfter, "FiatTokenV2: authorization is not yet valid");
        require(block.timestamp < validBefore, "FiatTokenV2: authorization is expired");
        _requireUnused(from, nonce);
        bytes32 structHash = keccak256(abi.encode(typeHash, from, to, value, validAfter, validBefore, nonce));
        _requireValidSignature(from, structHash, signature);

        _authorizationStates[from][nonce] = true;
        emit AuthorizationUsed(from, nonce);
        _transfer(from, to, value);
    }

    function _cancelAuthorization(address authorizer, bytes32 nonce, bytes memory signature) private {
        _requireUnused(authorizer, nonce);
        bytes32 structHash = keccak256(abi.encode(CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce));
        _requireValidSignature(authorizer, structHash, signature);
        _authorizationStates[authorizer][nonce] = true;
        emit AuthorizationCanceled(authorizer, nonce);
    }

    function _requireUnused(address authorizer, bytes32 nonce) private view {
        require(!_authorizationStates[authorizer][nonce], "FiatTokenV2: authorization is used or canceled");
    }

    // ---- Signature checking (same policy as USDC v2.2's SignatureChecker) ----

    function _requireValidSignature(address signer, bytes32 structHash, bytes memory signature) private view {
        require(_isValidSignature(signer, structHash, signature), "FiatTokenV2: invalid signature");
    }

    /// @dev Whether `signer` signed the EIP-712 message `structHash` of this token's domain.
    function _isValidSignature(address signer, bytes32 structHash, bytes memory signature)
        private
        view
        returns (bool)
    {
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", DOMAIN_SEPARATOR(), structHash));
        return Signatures.isValidNow(signer, digest, signature);
    }
}
