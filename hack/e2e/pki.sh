#!/usr/bin/env bash
# Makes the node's certificates and keys with openssl, once per address and node name, into
# $E2E_NODE_DIR/pki: a CA, the API server's serving certificate, the service-account key pair,
# and a client certificate (CN=user, O=group) plus kubeconfig for each client: admin, the
# kubelet (Node authorizer), controller-manager, scheduler, kube-proxy, and the API server's
# own kubelet client. Called by up.sh with HOST_IP set.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
HOST_IP=${HOST_IP:?HOST_IP: the node address}
pki=$E2E_NODE_DIR/pki
[ "$(cat "$pki/done" 2>/dev/null)" = "$HOST_IP $E2E_NODE_NAME" ] && exit 0
rm -rf "$pki"
mkdir -p "$pki"
cd "$pki"
ssl() { openssl "$@" 2>/dev/null; }
ssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 30 -subj /CN=api-access-injector-e2e-ca
ssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
ssl pkey -in sa.key -pubout -out sa.pub
san="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
printf 'subjectAltName=%s,DNS:localhost,IP:127.0.0.1,IP:%s,IP:%s\nextendedKeyUsage=serverAuth\n' \
  "$san" "$HOST_IP" "$E2E_SERVICE_IP" >server.ext
echo "extendedKeyUsage=clientAuth" >client.ext
# issue NAME SUBJECT EXTFILE
issue() {
  ssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
  ssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -out "$1.crt" -extfile "$3"
  rm -f "$1.csr"
}
issue apiserver /CN=kube-apiserver server.ext
issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" client.ext
for client in "admin:/O=system:masters/CN=kubernetes-admin" \
  "kubelet:/O=system:nodes/CN=system:node:$E2E_NODE_NAME" \
  "controller-manager:/CN=system:kube-controller-manager" \
  "scheduler:/CN=system:kube-scheduler" \
  "kube-proxy:/CN=system:kube-proxy"; do
  name=${client%%:*}
  issue "$name" "${client#*:}" client.ext
  cat >"$name.kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "https://$HOST_IP:6443", certificate-authority: "$pki/ca.crt"}}]
users: [{name: $name, user: {client-certificate: "$pki/$name.crt", client-key: "$pki/$name.key"}}]
contexts: [{name: e2e, context: {cluster: e2e, user: $name, namespace: default}}]
current-context: e2e
KUBECONFIG
done
echo "$HOST_IP $E2E_NODE_NAME" >done
