'use strict';
/**
 * Node.js client for the three-server MPC service (`protos/mpc/v1`).
 *
 * @example
 * const { Grant, MpcClient } = require('mpc-node-client');
 * const PREDICT = 'linear_regression.predict';
 * const owner = MpcClient.connect('cluster.toml', 'certs/model-owner.pem', 'certs/model-owner.key');
 * const job = { features: ['bank-1/income', 'bank-2/debt'], weights: 'model-owner/weights' };
 * // its own model, for itself, in this one job (the default, own data only, would refuse the banks' columns)
 * const weights = await owner.upload('weights', [0.25, -0.8], { grants: [Grant.pinned('model-owner', PREDICT, job)] });
 * // ... tells the banks weights.pinned: "model-owner/weights@<version>"
 * const bank = MpcClient.connect('cluster.toml', 'certs/bank-1.pem', 'certs/bank-1.key');
 * const pinned = { ...job, weights: weights.pinned }; // replacing the model voids the grant
 * const income = await bank.upload('income', [101234.56, 87000], { grants: [Grant.pinned('model-owner', PREDICT, pinned)] });
 * // income.grants[0].grantId names the grant: bank.revokeGrant('income', income.grants[0]) withdraws it
 * bank.close();
 * @module mpc-node-client
 */
module.exports = {
  ...require('./client'),
  ...require('./config'),
  ...require('./errors'),
  ...require('./fixed_point'),
  ...require('./grants'),
  ...require('./prg'),
  ...require('./ring'),
  ...require('./sharing'),
};
