{{/* Names and labels ------------------------------------------------------------------------ */}}

{{- define "omnivec.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "omnivec.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "omnivec.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "omnivec.selectorLabels" -}}
app.kubernetes.io/name: {{ include "omnivec.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "omnivec.labels" -}}
helm.sh/chart: {{ include "omnivec.chart" . }}
{{ include "omnivec.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: omnivec
{{- end }}

{{/* The omnivec server's own labels (component: server) */}}
{{- define "omnivec.serverSelectorLabels" -}}
{{ include "omnivec.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "omnivec.qdrantName" -}}
{{- printf "%s-qdrant" (include "omnivec.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "omnivec.qdrantSelectorLabels" -}}
{{ include "omnivec.selectorLabels" . }}
app.kubernetes.io/component: qdrant
{{- end }}

{{- define "omnivec.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "omnivec.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Index engine ------------------------------------------------------------------------------ */}}

{{/* "qdrant" with a Qdrant server (qdrant.url or qdrant.deploy), else "edge" (embedded). */}}
{{- define "omnivec.engine" -}}
{{- if or .Values.qdrant.url .Values.qdrant.deploy }}qdrant{{ else }}edge{{ end }}
{{- end }}

{{- define "omnivec.qdrantUrl" -}}
{{- if .Values.qdrant.deploy }}
{{- printf "http://%s:6333" (include "omnivec.qdrantName" .) }}
{{- else }}
{{- .Values.qdrant.url }}
{{- end }}
{{- end }}

{{/* "true" when more than one server pod may run at once. */}}
{{- define "omnivec.multiReplica" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled }}true{{ end }}
{{- end }}

{{/* Images ------------------------------------------------------------------------------------ */}}

{{- define "omnivec.imageRef" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
{{- end }}

{{/* The server image: image.tag, else appVersion + "-gpu" / "-bootstrap". */}}
{{- define "omnivec.image" -}}
{{- $suffix := "" }}
{{- if .Values.gpu.enabled }}
{{- $suffix = "-gpu" }}
{{- else if eq (include "omnivec.bootstrapInServer" .) "true" }}
{{- $suffix = "-bootstrap" }}
{{- end }}
{{- $tag := .Values.image.tag | default (printf "%s%s" .Chart.AppVersion $suffix) }}
{{- include "omnivec.imageRef" (dict "repository" .Values.image.repository "tag" $tag "digest" .Values.image.digest) }}
{{- end }}

{{- define "omnivec.bootstrapImage" -}}
{{- $b := .Values.model.bootstrap.image }}
{{- $repo := $b.repository | default .Values.image.repository }}
{{- $tag := $b.tag | default (printf "%s-bootstrap" .Chart.AppVersion) }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{- define "omnivec.bundleInitImage" -}}
{{- $i := .Values.model.bundle.initContainer.image }}
{{- if $i.repository }}
{{- printf "%s:%s" $i.repository ($i.tag | default "latest") }}
{{- else }}
{{- include "omnivec.image" . }}
{{- end }}
{{- end }}

{{/* Model bundle ------------------------------------------------------------------------------ */}}

{{- define "omnivec.bootstrapInServer" -}}
{{- if and (eq .Values.model.bundle.source "bootstrap") (eq .Values.model.bootstrap.in "server") }}true{{ end }}
{{- end }}

{{- define "omnivec.bundleClaimName" -}}
{{- .Values.model.bundle.pvc.existingClaim | default (printf "%s-models" (include "omnivec.fullname" .)) }}
{{- end }}

{{- define "omnivec.dataClaimName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-data" (include "omnivec.fullname" .)) }}
{{- end }}

{{/* CPU cores of the pod (limit, else request), rounded up; "" when neither is set. */}}
{{- define "omnivec.cpus" -}}
{{- $resources := .Values.resources | default dict }}
{{- $cpu := dig "limits" "cpu" "" $resources | default (dig "requests" "cpu" "" $resources) }}
{{- if $cpu }}
{{- $s := toString $cpu }}
{{- $cores := 0.0 }}
{{- if hasSuffix "m" $s }}
{{- $cores = divf (trimSuffix "m" $s | float64) 1000 }}
{{- else }}
{{- $cores = float64 $s }}
{{- end }}
{{- max 1 (ceil $cores | int) }}
{{- end }}
{{- end }}

{{/* An environment variable's value: lists and maps as JSON (pydantic-settings parses them),
     whole numbers without the exponent Helm gives large integers read from YAML (6.7e+07). */}}
{{- define "omnivec.envValue" -}}
{{- if or (kindIs "slice" .) (kindIs "map" .) }}
{{- toJson . }}
{{- else if and (kindIs "float64" .) (eq (floor .) .) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* OMNIVEC_* variables with plain values, as a YAML map name -> value: the config groups, then
     the settings the chart owns (they win). */}}
{{- define "omnivec.settingsEnv" -}}
{{- $env := dict }}
{{- range $group, $fields := .Values.config }}
{{- range $field, $value := $fields }}
{{- if not (kindIs "invalid" $value) }}
{{- $_ := set $env (printf "OMNIVEC_%s__%s" (upper $group) (upper $field)) (include "omnivec.envValue" $value) }}
{{- end }}
{{- end }}
{{- end }}
{{- $cpus := include "omnivec.cpus" . }}
{{- if and .Values.autoThreads $cpus }}
{{- $inference := .Values.config.server.inference_threads | default 2 | int }}
{{- if kindIs "invalid" .Values.config.server.preprocess_threads }}
{{- $_ := set $env "OMNIVEC_SERVER__PREPROCESS_THREADS" $cpus }}
{{- end }}
{{- if kindIs "invalid" .Values.config.index.search_threads }}
{{- $_ := set $env "OMNIVEC_INDEX__SEARCH_THREADS" $cpus }}
{{- end }}
{{- if kindIs "invalid" .Values.config.model.intra_op_threads }}
{{- $_ := set $env "OMNIVEC_MODEL__INTRA_OP_THREADS" (toString (max 1 (div (int $cpus) $inference))) }}
{{- end }}
{{- end }}
{{- if and .Values.gpu.enabled (kindIs "invalid" .Values.config.model.providers) }}
{{- $_ := set $env "OMNIVEC_MODEL__PROVIDERS" (toJson .Values.gpu.providers) }}
{{- end }}
{{- $_ := set $env "OMNIVEC_SERVER__HOST" "0.0.0.0" }}
{{- $_ := set $env "OMNIVEC_SERVER__PORT" (toString .Values.containerPort) }}
{{- $_ := set $env "OMNIVEC_DATA_DIR" .Values.persistence.mountPath }}
{{- $engine := include "omnivec.engine" . }}
{{- $_ := set $env "OMNIVEC_INDEX__ENGINE" $engine }}
{{- if eq $engine "qdrant" }}
{{- $_ := set $env "OMNIVEC_QDRANT_URL" (include "omnivec.qdrantUrl" .) }}
{{- end }}
{{- $source := .Values.model.bundle.source }}
{{- if or (eq $source "pvc") (eq $source "initContainer") }}
{{- $_ := set $env "OMNIVEC_MODEL__BUNDLE" .Values.model.bundle.mountPath }}
{{- else if eq $source "image" }}
{{- $_ := set $env "OMNIVEC_MODEL__BUNDLE" .Values.model.bundle.path }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* Refusals: configurations that cannot work, with what to do instead. */}}
{{- define "omnivec.validate" -}}
{{- $engine := include "omnivec.engine" . }}
{{- if and .Values.qdrant.url .Values.qdrant.deploy }}
{{- fail "omnivec: set either qdrant.url (an existing Qdrant server) or qdrant.deploy=true (a Qdrant in this release), not both" }}
{{- end }}
{{- if eq $engine "edge" }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail (printf "omnivec: the embedded Qdrant Edge index can be owned by only one server process, so replicaCount must be 1 (got %d). To run several replicas, use a Qdrant server: set qdrant.url=http://HOST:6333 or qdrant.deploy=true" (int .Values.replicaCount)) }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- fail "omnivec: the embedded Qdrant Edge index can be owned by only one server process, so autoscaling cannot be enabled. To autoscale, use a Qdrant server: set qdrant.url=http://HOST:6333 or qdrant.deploy=true" }}
{{- end }}
{{- end }}
{{- if and (include "omnivec.multiReplica" .) .Values.persistence.enabled (not (has "ReadWriteMany" .Values.persistence.accessModes)) }}
{{- fail "omnivec: several replicas cannot share a ReadWriteOnce data claim: set persistence.enabled=false (an emptyDir per pod: the index and label sets live in Qdrant) or persistence.accessModes=[ReadWriteMany]" }}
{{- end }}
{{- $bundle := .Values.model.bundle }}
{{- if and (eq $bundle.source "pvc") (not $bundle.pvc.existingClaim) (not $bundle.pvc.create) }}
{{- fail "omnivec: model.bundle.source=pvc needs model.bundle.pvc.existingClaim (a claim holding the bundle) or model.bundle.pvc.create=true" }}
{{- end }}
{{- if and (eq $bundle.source "initContainer") (not $bundle.initContainer.command) }}
{{- fail "omnivec: model.bundle.source=initContainer needs model.bundle.initContainer.command, which must write the bundle into $OMNIVEC_BUNDLE_DIR" }}
{{- end }}
{{- if and (eq $bundle.source "image") (not $bundle.path) }}
{{- fail "omnivec: model.bundle.source=image needs model.bundle.path, the bundle directory inside the image" }}
{{- end }}
{{- if and (include "omnivec.bootstrapInServer" .) .Values.gpu.enabled (not .Values.image.tag) }}
{{- fail "omnivec: model.bootstrap.in=server with gpu.enabled needs an image.tag whose image has the export extra, espeak-ng and onnxruntime-gpu; or keep model.bootstrap.in=initContainer (the default)" }}
{{- end }}
{{- end }}
