// Package patch turns what the injector did to a pod into the JSON patch (RFC 6902) that an
// admission webhook returns, and that the offline inject command applies to manifests.
//
// Its one entry point for pods is [Snapshot]: Take a snapshot of the pod as decoded, let the
// injector mutate the pod in place, then AppendPatch derives the patch from what changed,
// encoded as it is found. The webhook and the offline inject command both go this way, so
// that a manifest injected offline and a pod injected at admission get the very same
// operations. [Diff], the whole-document diff of two JSON documents, is the reference those
// patches are checked against on every golden file and fuzz input.
//
// # Keyed by name
//
// The elements of Kubernetes "named lists" (containers, initContainers, volumes, env,
// volumeMounts) are matched by their name, not by their index. A diff that compares arrays
// index by index, as general-purpose JSON diffs do, turns the sidecar that the injector
// inserts first in initContainers into a field-by-field rewrite of every init container after
// it. The API server applies the patch to its own copy of the pod, which may hold fields this
// binary's types do not know (a newer API version's fields): those would stay at their old
// index and end up in the wrong container, and a field the rewrite does not mention would be
// kept on the wrong one. Matching by name yields one "add" at index 0 and leaves every other
// element, with whatever fields it has, where it was
// (https://github.com/Azure/azure-workload-identity/issues/1312 is the same class of bug).
//
// # Where it sits
//
// The package lives under injector because it exists for the injector: it derives the patch
// from the injector's in-place mutation, and relies on a contract only the injector keeps
// (see Snapshot: the mutation writes in place only into what the Snapshot cloned). It imports
// no other package of this module, so the arrows run downwards: cmd and webhook use injector
// and injector/patch, internal/manifest uses both, and injector/patch uses neither (its tests
// run the real injector against it).
package patch
