{{/*
The chart name, overridable by nameOverride.
*/}}
{{- define "api-access-injector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name: fullnameOverride, else the release name, followed by the chart name unless the
release name contains it already. Truncated so that the longest derived name (the Service,
"<fullname>-webhook") stays a valid DNS label.
*/}}
{{- define "api-access-injector.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "api-access-injector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels of every object.
*/}}
{{- define "api-access-injector.labels" -}}
helm.sh/chart: {{ include "api-access-injector.chart" . }}
{{ include "api-access-injector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
Labels that select the webhook pods.
*/}}
{{- define "api-access-injector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "api-access-injector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{/*
Name of the webhook's ServiceAccount.
*/}}
{{- define "api-access-injector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "api-access-injector.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Name of the webhook Service (the webhook configuration's clientConfig.service.name).
*/}}
{{- define "api-access-injector.serviceName" -}}
{{- printf "%s-webhook" (include "api-access-injector.fullname" .) -}}
{{- end -}}

{{/*
Name of the Secret holding the serving certificate (tls.crt, tls.key), whatever the mode.
*/}}
{{- define "api-access-injector.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "provided" -}}
{{- .Values.certificates.provided.secretName -}}
{{- else -}}
{{- printf "%s-tls" (include "api-access-injector.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
Name of the cert-manager Certificate of the serving certificate.
*/}}
{{- define "api-access-injector.certificateName" -}}
{{- printf "%s-serving" (include "api-access-injector.fullname" .) -}}
{{- end -}}

{{/*
An image reference from {repository, tag, digest}: repository@digest when a digest is set,
else repository:tag with the tag defaulting to the chart's appVersion.
Usage: include "api-access-injector.image" (dict "image" .Values.image.proxy "context" $)
*/}}
{{- define "api-access-injector.image" -}}
{{- $image := .image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .context.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The image of the injected sidecar, by sidecar.mode.
*/}}
{{- define "api-access-injector.sidecarImage" -}}
{{- if eq .Values.sidecar.mode "kubectl" -}}
{{- include "api-access-injector.image" (dict "image" .Values.image.kubectl "context" .) -}}
{{- else -}}
{{- include "api-access-injector.image" (dict "image" .Values.image.proxy "context" .) -}}
{{- end -}}
{{- end -}}

{{/*
The pull policy of the injected sidecar, by sidecar.mode.
*/}}
{{- define "api-access-injector.sidecarPullPolicy" -}}
{{- if eq .Values.sidecar.mode "kubectl" -}}
{{- .Values.image.kubectl.pullPolicy -}}
{{- else -}}
{{- .Values.image.proxy.pullPolicy -}}
{{- end -}}
{{- end -}}

{{/*
Namespaces never injected, as a JSON list: webhook.excludedNamespaces, then kube-system,
kube-node-lease and the release namespace, which are always excluded, without repeats.
*/}}
{{- define "api-access-injector.excludedNamespaces" -}}
{{- concat .Values.webhook.excludedNamespaces (list "kube-system" "kube-node-lease" .Release.Namespace) | uniq | toJson -}}
{{- end -}}

{{/*
Whether the PodDisruptionBudget is rendered: "true" or "".
*/}}
{{- define "api-access-injector.pdbEnabled" -}}
{{- $enabled := .Values.podDisruptionBudget.enabled -}}
{{- if kindIs "invalid" $enabled -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end -}}
{{- else if $enabled -}}
true
{{- end -}}
{{- end -}}

{{/*
Checks of values that contradict each other, which the schema cannot express. Each fails the
render with a message naming the values involved. Included by deployment.yaml, which every
install renders.
*/}}
{{- define "api-access-injector.validate" -}}
{{- $c := .Values.certificates -}}
{{- if eq $c.mode "provided" -}}
{{- if not $c.provided.secretName -}}
{{- fail "certificates.provided.secretName is required when certificates.mode is provided: the name of a kubernetes.io/tls Secret in the release namespace" -}}
{{- end -}}
{{- if not $c.provided.caBundle -}}
{{- fail "certificates.provided.caBundle is required when certificates.mode is provided: the base64-encoded PEM of the CA that signed the serving certificate" -}}
{{- end -}}
{{- if not (contains "-----BEGIN CERTIFICATE-----" (b64dec $c.provided.caBundle)) -}}
{{- fail "certificates.provided.caBundle must be a base64-encoded PEM certificate (base64 of a file starting with -----BEGIN CERTIFICATE-----), not the PEM itself" -}}
{{- end -}}
{{- else -}}
{{- if $c.provided.caBundle -}}
{{- fail (printf "certificates.provided.caBundle is set but certificates.mode is %s: it is only used in provided mode (%s)" $c.mode (ternary "the webhook writes the caBundle itself" "cert-manager injects the caBundle" (eq $c.mode "self-managed"))) -}}
{{- end -}}
{{- if $c.provided.secretName -}}
{{- fail (printf "certificates.provided.secretName is set but certificates.mode is %s: it is only used in provided mode (the Secret is %s-tls in this mode)" $c.mode (include "api-access-injector.fullname" .)) -}}
{{- end -}}
{{- end -}}
{{- if and $c.certManager.issuerRef (ne $c.mode "cert-manager") -}}
{{- fail (printf "certificates.certManager.issuerRef is set but certificates.mode is %s: set certificates.mode=cert-manager to use it" $c.mode) -}}
{{- end -}}
{{- if and (eq $c.mode "cert-manager") $c.certManager.issuerRef (not $c.certManager.issuerRef.name) -}}
{{- fail "certificates.certManager.issuerRef.name is required when certificates.certManager.issuerRef is set" -}}
{{- end -}}
{{- if eq (int .Values.sidecar.healthPort) (int .Values.sidecar.proxyPort) -}}
{{- fail (printf "sidecar.healthPort and sidecar.proxyPort are both %d: the sidecar's health port must differ from the port it serves the API on" (int .Values.sidecar.proxyPort)) -}}
{{- end -}}
{{- if has (int .Values.sidecar.transparentPort) (list (int .Values.sidecar.proxyPort) (int .Values.sidecar.healthPort)) -}}
{{- fail (printf "sidecar.transparentPort %d is also sidecar.proxyPort or sidecar.healthPort: the sidecar's TLS port in transparent mode must differ from both" (int .Values.sidecar.transparentPort)) -}}
{{- end -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if and (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "invalid" $pdb.maxUnavailable)) -}}
{{- fail "podDisruptionBudget.minAvailable and podDisruptionBudget.maxUnavailable are both set: set one of them and the other to null" -}}
{{- end -}}
{{- if and (kindIs "invalid" $pdb.minAvailable) (kindIs "invalid" $pdb.maxUnavailable) -}}
{{- fail "podDisruptionBudget: set one of minAvailable and maxUnavailable" -}}
{{- end -}}
{{- if and (include "api-access-injector.pdbEnabled" .) (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "string" $pdb.minAvailable)) (ge (int $pdb.minAvailable) (int .Values.replicaCount)) -}}
{{- fail (printf "podDisruptionBudget.minAvailable (%d) must be below replicaCount (%d): otherwise no node running a webhook replica could ever be drained; raise replicaCount or disable the budget" (int $pdb.minAvailable) (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled is true but metrics.enabled is false: the ServiceMonitor would scrape nothing" -}}
{{- end -}}
{{- if and .Values.networkPolicy.metricsFrom (not .Values.metrics.enabled) -}}
{{- fail "networkPolicy.metricsFrom is set but metrics.enabled is false: there is no metrics port to admit" -}}
{{- end -}}
{{- end -}}
