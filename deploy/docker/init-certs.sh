#!/bin/sh
# One-shot PKI set-up of the docker-compose cluster (the `certs` service runs this).
#
# In /var/lib/mpc/pki (volume `pki`, mounted by this service only) it writes the cluster file
# and lets `mpc certs` create the CA, the three server certificates and the client
# certificates; existing valid files are kept, so re-running changes nothing. Then it hands
# out copies, so that every container gets only what its party may hold:
#   node0..node2 (volumes `node0`..`node2`): cluster.toml, ca.pem, server-N.pem/.key
#   clients (volume `clients`): cluster.toml (compose network addresses), cluster-host.toml
#       (the published ports, for clients outside the compose network), ca.pem and the client
#       certificates and keys. The CA key (ca.key) never leaves the `pki` volume.
# Environment: MPC_RING (128, the default, or 64), MPC_FRACTIONAL_BITS (default: the ring's),
# MPC_CLIENTS (default "model-owner bank-1 bank-2"), MPC_PUBLIC_HOST (host name
# or IP that outside clients reach the published ports at, default 127.0.0.1) and
# MPC_PORT_0..MPC_PORT_2 (the published ports, default 7100..7102).
set -eu
umask 077
root=/var/lib/mpc
pki=$root/pki
clients=${MPC_CLIENTS:-model-owner bank-1 bank-2}
public_host=${MPC_PUBLIC_HOST:-127.0.0.1}

cluster_file() {  # cluster_file ADDRESS0 ADDRESS1 ADDRESS2
  printf '# MPC cluster file written by mpc-init-certs: the three servers in party order.\n'
  printf 'ca = "ca.pem"\nring = %s\n' "${MPC_RING:-128}"
  if [ -n "${MPC_FRACTIONAL_BITS:-}" ]; then printf 'fractional_bits = %s\n' "$MPC_FRACTIONAL_BITS"; fi
  party=0
  for address in "$@"; do
    printf '\n[[servers]]\nidentity = "server-%s"\naddress = "%s"\n' "$party" "$address"
    party=$((party + 1))
  done
}

put() {  # put FILE DIRECTORY: copy atomically (a starting server never reads half a file)
  cp "$1" "$2/.$(basename "$1").tmp"
  mv -f "$2/.$(basename "$1").tmp" "$2/$(basename "$1")"
}

cluster_file node0:7100 node1:7100 node2:7100 > "$pki/cluster.toml"
cluster_file "$public_host:${MPC_PORT_0:-7100}" "$public_host:${MPC_PORT_1:-7101}" \
  "$public_host:${MPC_PORT_2:-7102}" > "$pki/cluster-host.toml"

set --
for client in $clients; do
  set -- "$@" --client "$client"
done
mpc certs --cluster "$pki/cluster.toml" "$@"

for party in 0 1 2; do
  for file in cluster.toml ca.pem "server-$party.pem" "server-$party.key"; do
    put "$pki/$file" "$root/node$party"
  done
done
for file in cluster.toml cluster-host.toml ca.pem; do
  put "$pki/$file" "$root/clients"
done
for client in $clients; do
  put "$pki/$client.pem" "$root/clients"
  put "$pki/$client.key" "$root/clients"
done
echo "node0..node2: cluster.toml, ca.pem and their own server certificate and key"
echo "clients: cluster.toml, cluster-host.toml (${public_host}, published ports), ca.pem, certificates of: $clients"
