'use strict';
/**
 * Node.js client for the three-server MPC service (`protos/mpc/v1`).
 *
 * @example
 * const { MpcClient } = require('mpc-node-client');
 * const bank = MpcClient.connect('cluster.toml', 'certs/bank-1.pem', 'certs/bank-1.key');
 * const grants = [{ receiver: 'model-owner', program: 'linear_regression.predict' }];
 * await bank.upload('income', [101234.56, 87000], { grants });
 * bank.close();
 * @module mpc-node-client
 */
module.exports = {
  ...require('./client'),
  ...require('./config'),
  ...require('./errors'),
  ...require('./fixed_point'),
  ...require('./prg'),
  ...require('./ring'),
  ...require('./sharing'),
};
