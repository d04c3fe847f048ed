// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {X402Wallet} from "./X402Wallet.sol";

/// @title X402WalletFactory
/// @notice Deploys X402Wallets with CREATE2, so a wallet's address is known
///         (and can be paid to, or sign ERC-6492 payments) before it exists.
/// @dev Stateless and without a constructor, so its runtime code can be placed
///      at any address with `anvil_setCode`. The address of a wallet depends on
///      this factory's address, the owner and the salt.
contract X402WalletFactory {
    /// A wallet was deployed.
    event WalletCreated(address indexed wallet, address indexed owner, bytes32 salt);

    /// @notice Deploys the wallet of (`owner`, `salt`), or returns it when it
    ///         already exists, so that a deployment can be retried or raced
    ///         without failing.
    function createWallet(address owner, bytes32 salt) external returns (address wallet) {
        wallet = walletAddress(owner, salt);
        if (wallet.code.length > 0) return wallet;
        X402Wallet created = new X402Wallet{salt: _salt(owner, salt)}(owner);
        require(address(created) == wallet, "X402WalletFactory: address mismatch");
        emit WalletCreated(wallet, owner, salt);
    }

    /// @notice Where the wallet of (`owner`, `salt`) is, or will be, deployed.
    function walletAddress(address owner, bytes32 salt) public view returns (address) {
        bytes32 initCodeHash = keccak256(abi.encodePacked(type(X402Wallet).creationCode, abi.encode(owner)));
        bytes32 digest = keccak256(abi.encodePacked(bytes1(0xff), address(this), _salt(owner, salt), initCodeHash));
        return address(uint160(uint256(digest)));
    }

    /// @dev The owner is part of the CREATE2 salt as well as the init code, so
    ///      one salt gives every owner a different wallet.
    function _salt(address owner, bytes32 salt) private pure returns (bytes32) {
        return keccak256(abi.encode(owner, salt));
    }
}
