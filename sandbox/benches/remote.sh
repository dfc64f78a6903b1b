#!/bin/sh
# The sandbox bench (benches/sandbox.rs) three times in one run on equal work: against the local
# Podman socket, through TLS with client certificates (socat terminating TLS in front of that
# socket), and through ssh (a throwaway sshd on a loopback port whose forced command is
# `podman system dial-stdio`). The engine is the same; what differs is the transport.
#
#   eval "$(cargo xtask env)"; sh sandbox/benches/remote.sh [bench arguments, e.g. --reps 20]
#
# Needs what `cargo xtask setup` installs (podman's service, socat, openssh-server) and, for sshd,
# root (it logs in as the current user with a key it makes).
set -eu
sock=${DOCKER_HOST#unix://}
[ -S "$sock" ] || { echo "DOCKER_HOST must be the local unix socket (eval \"\$(cargo xtask env)\")" >&2; exit 1; }
bench=$(cargo bench -p keel-sandbox --bench sandbox --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "sandbox" and m.get("executable"):
        print(m["executable"])')
[ -x "$bench" ] || { echo "the sandbox bench did not build" >&2; exit 1; }
d=$(mktemp -d)
pids=""
trap 'for p in $pids; do kill $p 2>/dev/null || true; done; rm -rf "$d"' EXIT
cd "$d"
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
for n in server client; do
  mkdir $n
  (cd $n
   openssl req -x509 -days 1 $ec -keyout ca-key.pem -out ca.pem -subj /CN=$n-ca 2>/dev/null
   openssl req $ec -keyout key.pem -out req.csr -subj /CN=keel 2>/dev/null)
done
echo "subjectAltName=IP:127.0.0.1" > server/ext.cnf
echo "extendedKeyUsage=clientAuth" > client/ext.cnf
for n in server client; do
  (cd $n && openssl x509 -req -days 1 -in req.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
     -extfile ext.cnf -out cert.pem 2>/dev/null)
done
mkdir certs && cp server/ca.pem certs/ca.pem && cp client/cert.pem client/key.pem certs/
tls_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
socat OPENSSL-LISTEN:$tls_port,bind=127.0.0.1,reuseaddr,fork,cert=server/cert.pem,key=server/key.pem,cafile=client/ca.pem,verify=1 \
  UNIX-CONNECT:"$sock" 2>/dev/null &
pids="$pids $!"

ssh-keygen -q -t ed25519 -N '' -f host_key
ssh-keygen -q -t ed25519 -N '' -f id
printf '#!/bin/sh\nexec podman --url unix://%s system dial-stdio\n' "$sock" > dial
chmod 755 dial
echo "command=\"$d/dial\",restrict $(cat id.pub)" > authorized_keys
ssh_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "[127.0.0.1]:$ssh_port $(cat host_key.pub)" > known_hosts
cat > sshd_config <<EOF
ListenAddress 127.0.0.1:$ssh_port
HostKey $d/host_key
AuthorizedKeysFile $d/authorized_keys
PidFile none
StrictModes no
UsePAM no
PasswordAuthentication no
PermitRootLogin prohibit-password
EOF
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f sshd_config 2>sshd.log &
pids="$pids $!"
sleep 1
cd - >/dev/null

echo "== local: $DOCKER_HOST"
"$bench" "$@"
echo "== TLS: tcp://127.0.0.1:$tls_port (client certificates; socat in front of the same socket)"
DOCKER_HOST=tcp://127.0.0.1:$tls_port DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$d/certs "$bench" "$@"
echo "== ssh: ssh://$(id -un)@127.0.0.1:$ssh_port (podman system dial-stdio, multiplexed)"
DOCKER_HOST=ssh://$(id -un)@127.0.0.1:$ssh_port \
  KEEL_SSH_COMMAND="ssh -F /dev/null -i $d/id -o IdentitiesOnly=yes -o UserKnownHostsFile=$d/known_hosts -o StrictHostKeyChecking=yes -o ControlPath=$d/mux-%C -o ControlPersist=5" \
  "$bench" "$@"
