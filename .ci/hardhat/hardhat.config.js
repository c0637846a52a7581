// Minimal config: `npx hardhat node --hostname 127.0.0.1 --port PORT` serves JSON-RPC.
module.exports = { solidity: "0.8.24", networks: { hardhat: { chainId: 31337 } } };
