package materialize

// The in-cluster clients nobody here wrote, as the transparent-mode tests run them, here on
// envtest with a materialised pod, and on the one-node cluster of test/realcluster.

// PythonInClusterClient uses the official Python client as the docs say to in a pod:
// config.load_incluster_config(), then lists the pods of its namespace and tries to create a
// ConfigMap, printing a ClientReport.
const PythonInClusterClient = `
import json
from kubernetes import client, config
from kubernetes.client.rest import ApiException

config.load_incluster_config()
v1 = client.CoreV1Api()
ns = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
report = {"pods": []}
try:
    report["pods"] = [p.metadata.name for p in v1.list_namespaced_pod(ns).items]
except Exception as e:
    report["listError"] = str(e)
try:
    v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="written-by-python")))
except ApiException as e:
    report["writeError"] = "%d %s" % (e.status, e.body)
print(json.dumps(report))
`

// CurlRecipe is the docs' "without using a proxy" recipe, verbatim
// (https://kubernetes.io/docs/tasks/run-application/access-api-from-pod/#without-using-a-proxy),
// then its last line again for the pods of the namespace, and for a write.
const CurlRecipe = `set -e
# Point to the internal API server hostname
APISERVER=https://kubernetes.default.svc

# Path to ServiceAccount token
SERVICEACCOUNT=/var/run/secrets/kubernetes.io/serviceaccount

# Read this Pod's namespace
NAMESPACE=$(cat ${SERVICEACCOUNT}/namespace)

# Read the ServiceAccount bearer token
TOKEN=$(cat ${SERVICEACCOUNT}/token)

# Reference the internal certificate authority (CA)
CACERT=${SERVICEACCOUNT}/ca.crt

# Explore the API with TOKEN
curl --cacert ${CACERT} --header "Authorization: Bearer ${TOKEN}" -X GET ${APISERVER}/api
echo
curl --cacert ${CACERT} --header "Authorization: Bearer ${TOKEN}" -X GET ${APISERVER}/api/v1/namespaces/${NAMESPACE}/pods
echo
curl --cacert ${CACERT} --header "Authorization: Bearer ${TOKEN}" -X POST -H 'Content-Type: application/json' \
  -d '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"written-by-curl"}}' ${APISERVER}/api/v1/namespaces/${NAMESPACE}/configmaps
echo
`
