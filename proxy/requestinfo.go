package proxy

import (
	"net/http"
	"strings"
)

// requestInfo is what the API server's authorization sees of a request: the RBAC verb and
// the resource tuple, or the non-resource path. It holds no object name: the access record
// keeps none.
type requestInfo struct {
	// resource is true for a request to a resource path (/api/v1/..., /apis/group/version/...).
	resource bool
	// verb is the RBAC verb: get, list, watch, create, update, patch, delete, deletecollection
	// or one of the legacy path verbs (watch, proxy) for a resource request; the lower-case
	// HTTP method for a non-resource request. It is "" for a resource request whose method
	// maps to no verb (OPTIONS, for one), as the API server leaves it.
	verb string
	// apiGroup, resource, subresource and namespace are the resource tuple; namespace is ""
	// for a cluster-scoped request.
	apiGroup, resourceName, subresource, namespace string
	// path is the non-resource URL, "" for a resource request.
	path string
	// name reports whether the request names one object (a path name, or a list narrowed to
	// one name by a metadata.name field selector does not count: its verb stays list).
	name bool
}

// Verbs the API server derives from the HTTP method of a resource request.
const (
	verbGet              = "get"
	verbList             = "list"
	verbWatch            = "watch"
	verbCreate           = "create"
	verbUpdate           = "update"
	verbPatch            = "patch"
	verbDelete           = "delete"
	verbDeleteCollection = "deletecollection"
	verbProxy            = "proxy"
)

// parseRequestInfo reads a request as the API server's RequestInfoFactory does (APIPrefixes
// api and apis, the groupless prefix api), from its method, its canonical path and its raw
// query: a path under /api/<version>/ or /apis/<group>/<version>/ is a resource request,
// anything else (/version, /healthz, /apis, /api/v1) a non-resource one. A GET of a collection
// is a list, or a watch when its watch parameter reads as true; a DELETE of a collection is a
// deletecollection; /watch/ and /proxy/ after the version are verbs.
//
// It is a port of NewRequestInfo
// (https://github.com/kubernetes/apiserver/blob/v0.37.2/pkg/endpoints/request/requestinfo.go)
// rather than an import of it, which would link apimachinery's scheme and conversion code
// into the sidecar; FuzzRequestInfo compares the two on every input. ok is false where the
// API server fails to parse the path (a /watch or /proxy with nothing after it); the info
// then holds what was read, as the API server's does.
func parseRequestInfo(method, urlPath, rawQuery string) (info requestInfo, ok bool) {
	rest := strings.Trim(urlPath, "/")
	// parts counts the segments left in rest, as len(currentParts) does in the reference.
	parts := 0
	if rest != "" {
		parts = strings.Count(rest, "/") + 1
	}
	next := func() string {
		s, r, _ := strings.Cut(rest, "/")
		rest = r
		parts--
		return s
	}
	nonResource := requestInfo{verb: lowerMethod(method), path: urlPath}
	if parts < 3 {
		return nonResource, true
	}
	switch prefix := next(); prefix {
	case "api":
	case "apis":
		if parts < 3 {
			return nonResource, true
		}
		info.apiGroup = next()
	default:
		return nonResource, true
	}
	info.resource = true
	next() // version

	first, _, _ := strings.Cut(rest, "/")
	if first == "watch" || first == "proxy" {
		if parts < 2 {
			info.verb = lowerMethod(method)
			return info, false
		}
		info.verb = next()
	} else {
		info.verb = methodVerb(method)
	}

	// namespaces/{namespace}/{resource}/...: the namespace is read off and the parts after
	// it are the resource's, unless the next part is a namespace subresource (status,
	// finalize), in which case the namespace itself is the resource.
	if first, _, _ = strings.Cut(rest, "/"); first == "namespaces" {
		if parts > 1 {
			after := rest[len(first)+1:]
			ns, tail, _ := strings.Cut(after, "/")
			info.namespace = ns
			if parts > 2 {
				if sub, _, _ := strings.Cut(tail, "/"); sub != "status" && sub != "finalize" {
					rest, parts = tail, parts-2
				}
			}
		}
	}

	// resource/name/subresource/anything else.
	info.resourceName = next()
	if parts >= 1 {
		info.name = next() != ""
		if parts >= 1 && info.verb != verbProxy {
			info.subresource = next()
		}
	}

	if !info.name && info.verb == verbGet {
		info.verb = verbList
		if queryBool(rawQuery, "watch") {
			info.verb = verbWatch
		}
	}
	if !info.name && info.verb == verbDelete {
		info.verb = verbDeleteCollection
	}
	return info, true
}

// methodVerb is the verb of a resource request that names none in its path.
func methodVerb(method string) string {
	switch method {
	case http.MethodPost:
		return verbCreate
	case http.MethodGet, http.MethodHead:
		return verbGet
	case http.MethodPut:
		return verbUpdate
	case http.MethodPatch:
		return verbPatch
	case http.MethodDelete:
		return verbDelete
	}
	return ""
}

// lowerMethod is strings.ToLower(method), without allocating for the usual methods.
func lowerMethod(method string) string {
	switch method {
	case http.MethodGet:
		return "get"
	case http.MethodHead:
		return "head"
	case http.MethodPost:
		return "post"
	case http.MethodPut:
		return "put"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	case http.MethodOptions:
		return "options"
	}
	return strings.ToLower(method)
}

// queryBool is apiBool with the cheap test first: a query without the key (or a
// percent-encoding that may spell it) does not hold it.
func queryBool(rawQuery, key string) bool {
	return rawQuery != "" && mayHold(rawQuery, key) && apiBool(rawQuery, key)
}
