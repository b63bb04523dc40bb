'use strict';
/**
 * Node.js client for the three-server MPC service (`protos/mpc/v1`).
 *
 * @example
 * const { Grant, Keep, MpcClient } = require('mpc-node-client');
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
 *
 * // The programs, their roles, parameters (type, default, range) and outputs:
 * const { items } = await owner.programs(); // [{name: 'dot', roles, parameters, outputs: ['value']}, ...]
 * // Keep the predictions on the servers as owner's dataset "scores" (nobody sees them), at the
 * // cluster's scale 2^32 (a product's natural scale is the sum of its inputs' scales), with a grant
 * // for a later job; then use it like any upload:
 * const scored = await owner.run(PREDICT, job, {
 *   keepAs: { predictions: new Keep('scores', { grants: [{ receiver: 'model-owner', program: 'dot' }] }) },
 *   outputFractionalBits: 32,
 * });
 * // scored.outputs[0].keptAs.pinned: "model-owner/scores@<version>"
 * const total = await owner.run('dot', { x: 'scores', y: 'scores' });
 * const { values } = await owner.fetch(total); // its first delivered output, "value"; fetchAll(total): every one
 * // Public parameters are typed by the program's declaration: {iterations: 5} is an integer,
 * // {l2: 1} the number 1.0 (for a program that declares them); see lib/params.js.
 * @module mpc-node-client
 */
module.exports = {
  ...require('./client'),
  ...require('./config'),
  ...require('./errors'),
  ...require('./fixed_point'),
  ...require('./grants'),
  ...require('./jobs'),
  ...require('./params'),
  ...require('./prg'),
  ...require('./ring'),
  ...require('./sharing'),
};
