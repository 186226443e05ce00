// Package materialize plays the kubelet's part for one pod, on this machine and with no
// container runtime, so that tests and the demo can prove that the wiring the injector adds to
// a pod works, not only that it looks right (test layer 4 in the architecture).
//
// Given a pod as the API server stored it, an admin rest.Config and a root directory, it
//
//   - writes the volumes that the containers it runs mount, under <root>/volumes/<name>/:
//     service-account tokens from the TokenRequest API (with the audience and expiry the
//     projection asks for, bound to the pod), ConfigMaps and Secrets read from the API, and
//     downward-API files, honouring defaultMode and per-item modes; an emptyDir (on disk or
//     in memory alike) is a world-writable directory kept for the pod's life and shared by
//     the containers that mount it, so what the sidecar writes there the app reads;
//   - builds each container's process as the kubelet would: command and args with $(VAR)
//     references expanded, env from value, fieldRef, configMapKeyRef, secretKeyRef and
//     envFrom, plus KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT taken from the
//     rest.Config;
//   - starts a sidecar and holds the next containers back until its startupProbe (httpGet,
//     tcpSocket or exec) passes, runs the injector's kubeconfig init container to completion,
//     and stops the sidecar with SIGTERM.
//
// The one deviation from a kubelet: there are no mount namespaces, so every argument and
// environment value that names a path under one of the container's volumeMounts (the whole
// value, or the value of a --flag=value argument) is rewritten to the matching directory
// under root. A binary that reads a mounted path only by default, without naming it, is
// told the remapped path through ProcessOptions.ImplicitPathFlags; kubectl proxy, which reads
// the in-cluster service-account files at a path no flag moves, through
// ProcessOptions.InClusterConfig. Clients that must see the container's own paths (the
// in-cluster service-account files, /etc/hosts with the pod's hostAliases) run instead in a
// pod view (ProcessOptions.PodView): a private mount namespace, needing root, where the
// container's volumes are bind-mounted at their mount paths and /etc/hosts is the kubelet's.
// Everything else is as on
// a node: the processes share this machine's network, as the containers of a pod share one,
// so a sidecar listening on 127.0.0.1 is reached by the app on 127.0.0.1.
//
// What a node would do and this package does not: pull images (the caller names local
// binaries instead), isolate file systems or users, rotate tokens, restart containers, run
// liveness probes.
package materialize
