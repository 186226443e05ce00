// Package rbac turns what api-proxy sidecars recorded (package accessrecord) into the
// least-privilege RBAC their ServiceAccount needs: the `api-access-injector rbac` command and
// the `kubectl apiaccess rbac` plugin.
//
// The rules are exactly what was used, never wider: one rule per API group and set of verbs,
// listing the resources (and "resource/subresource") used with those verbs, so that no rule's
// cross product grants a pair that was not recorded. Requests in the pod's namespace become
// a Role there; requests in another namespace a Role in that namespace (the minimal form:
// a ClusterRole bound by a ClusterRoleBinding would grant the same in every namespace); and
// only cluster-scoped requests (cluster-scoped resources, namespaced resources across all
// namespaces, non-resource URLs) a ClusterRole. Each gets its binding to the ServiceAccount.
//
// With Compare, it asks the API server's own authorizer what the ServiceAccount may do today
// (SelfSubjectRulesReview, impersonating the ServiceAccount) and reports what the app never
// used; RBAC is never evaluated here.
package rbac
