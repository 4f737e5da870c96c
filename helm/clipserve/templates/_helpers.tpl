{{/*
Chart name, truncated to 63 characters (a DNS label).
*/}}
{{- define "clipserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: RELEASE-NAME, or RELEASE when it already contains the name.
*/}}
{{- define "clipserve.fullname" -}}
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

{{/*
The headless Service's name.
*/}}
{{- define "clipserve.headlessName" -}}
{{- printf "%s-headless" (include "clipserve.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{/*
name-version for the helm.sh/chart label.
*/}}
{{- define "clipserve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The server image's tag: image.tag, else the chart's appVersion.
*/}}
{{- define "clipserve.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The server image reference: repository@digest, or repository:tag.
*/}}
{{- define "clipserve.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "clipserve.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Labels every resource carries. Call with (dict "ctx" $ "component" "server").
*/}}
{{- define "clipserve.labels" -}}
helm.sh/chart: {{ include "clipserve.chart" .ctx }}
{{ include "clipserve.selectorLabels" . }}
app.kubernetes.io/version: {{ include "clipserve.imageTag" .ctx | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: clipserve
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end }}

{{/*
Selector labels (immutable on a Deployment: name, instance, component).
Call with (dict "ctx" $ "component" "server").
*/}}
{{- define "clipserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "clipserve.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The ServiceAccount's name.
*/}}
{{- define "clipserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "clipserve.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The pod's terminationGracePeriodSeconds, and the check that it covers the
preStop sleep, the queue drain and the server's drain timeout.
*/}}
{{- define "clipserve.drainNeeds" -}}
{{- $d := .Values.drain }}
{{- add (int $d.preStopSleepSeconds) (int $d.queueDrainSeconds) (int $d.timeoutSeconds) }}
{{- end }}

{{- define "clipserve.terminationGracePeriodSeconds" -}}
{{- $needs := include "clipserve.drainNeeds" . | int }}
{{- $d := .Values.drain }}
{{- if kindIs "invalid" $d.terminationGracePeriodSeconds }}
{{- add $needs 5 }}
{{- else }}
{{- $tgps := int $d.terminationGracePeriodSeconds }}
{{- if lt $tgps $needs }}
{{- fail (printf "drain.terminationGracePeriodSeconds (%d) must be at least drain.preStopSleepSeconds (%d) + drain.queueDrainSeconds (%d) + drain.timeoutSeconds (%d) = %d, or the kubelet kills the server before it has drained" $tgps (int $d.preStopSleepSeconds) (int $d.queueDrainSeconds) (int $d.timeoutSeconds) $needs) }}
{{- end }}
{{- $tgps }}
{{- end }}
{{- end }}

{{/*
Environment variable holding a server flag's value: decode-threads ->
CLIPSERVE_FLAG_DECODE_THREADS.
*/}}
{{- define "clipserve.flagEnv" -}}
{{- printf "CLIPSERVE_FLAG_%s" (. | upper | replace "-" "_") }}
{{- end }}

{{/*
Where the TLS material is mounted in the server pod.
*/}}
{{- define "clipserve.tlsDir" -}}/etc/clipserve/tls{{- end }}
{{- define "clipserve.clientCADir" -}}/etc/clipserve/client-ca{{- end }}
{{- define "clipserve.probeClientDir" -}}/etc/clipserve/probe-client{{- end }}

{{/*
The server's flags, as a YAML map flag -> value (the ConfigMap holds the
values, the container's args name them). Fails on a misconfiguration.
*/}}
{{- define "clipserve.serverFlags" -}}
{{- $v := .Values }}
{{- $flags := dict "grpc-port" (toString $v.server.grpcPort) "metrics-port" (toString $v.server.metricsPort) "drain-timeout-seconds" (toString $v.drain.timeoutSeconds) }}
{{- $c := $v.server.connection }}
{{- $_ := set $flags "grpc-max-connection-age" (toString (int $c.maxAgeSeconds)) }}
{{- $_ := set $flags "grpc-max-connection-age-grace" (toString (int $c.maxAgeGraceSeconds)) }}
{{- $_ := set $flags "grpc-keepalive-time" (toString (int $c.keepaliveTimeSeconds)) }}
{{- $_ := set $flags "grpc-keepalive-timeout" (toString (int $c.keepaliveTimeoutSeconds)) }}
{{- $_ := set $flags "grpc-keepalive-min-ping-interval" (toString (int $c.keepaliveMinPingIntervalSeconds)) }}
{{- $_ := set $flags "grpc-keepalive-permit-without-calls" (toString $c.keepalivePermitWithoutCalls) }}
{{- if ne $v.modelRepository.source "builtin" }}
{{- $_ := set $flags "model-repository" $v.modelRepository.path }}
{{- end }}
{{- if $v.modelRepository.poll.enabled }}
{{- if eq $v.modelRepository.source "builtin" }}
{{- fail "modelRepository.poll.enabled needs a repository (source image, pvc or initContainer), not builtin" }}
{{- end }}
{{- $_ := set $flags "model-control-mode" "poll" }}
{{- $_ := set $flags "repository-poll-seconds" (toString $v.modelRepository.poll.seconds) }}
{{- end }}
{{- if $v.tls.enabled }}
{{- if not $v.tls.secretName }}
{{- fail "tls.enabled needs tls.secretName: a Secret with tls.crt and tls.key" }}
{{- end }}
{{- $_ := set $flags "grpc-use-ssl" "true" }}
{{- $_ := set $flags "grpc-server-cert" (printf "%s/tls.crt" (include "clipserve.tlsDir" .)) }}
{{- $_ := set $flags "grpc-server-key" (printf "%s/tls.key" (include "clipserve.tlsDir" .)) }}
{{- if $v.tls.clientCA.enabled }}
{{- $_ := set $flags "grpc-ssl-client-ca" (printf "%s/%s" (include "clipserve.clientCADir" .) $v.tls.clientCA.key) }}
{{- end }}
{{- else if $v.tls.clientCA.enabled }}
{{- fail "tls.clientCA.enabled needs tls.enabled" }}
{{- end }}
{{- range $name, $value := $v.server.extraFlags }}
{{- if hasKey $flags $name }}
{{- fail (printf "server.extraFlags.%s: the chart sets --%s itself; use the chart's value for it" $name $name) }}
{{- end }}
{{- if has $name (list "grpc-use-ssl" "grpc-server-cert" "grpc-server-key" "grpc-ssl-client-ca" "model-repository" "grpc-address" "allow-metrics" "model-control-mode" "repository-poll-seconds") }}
{{- fail (printf "server.extraFlags.%s: set through the chart's values (tls.*, modelRepository.*), not as a flag" $name) }}
{{- end }}
{{- $_ := set $flags $name (toString $value) }}
{{- end }}
{{- toYaml $flags }}
{{- end }}

{{/*
A health check over TLS with clipserve-client, for the exec probes.
*/}}
{{- define "clipserve.tlsHealthCommand" -}}
- clipserve-client
- --server
- {{ printf "%s:%d" .Values.tls.probeHost (int .Values.server.grpcPort) | quote }}
- --ssl-ca
- {{ printf "%s/%s" (include "clipserve.tlsDir" .) .Values.tls.caKey | quote }}
{{- if .Values.tls.clientCA.enabled }}
{{- $dir := ternary (include "clipserve.probeClientDir" .) (include "clipserve.tlsDir" .) (ne .Values.tls.clientCA.probeClientSecretName "") }}
- --ssl-cert
- {{ printf "%s/tls.crt" $dir | quote }}
- --ssl-key
- {{ printf "%s/tls.key" $dir | quote }}
{{- end }}
- health
{{- end }}

{{/*
One probe (startup, readiness or liveness): native gRPC on the health
service "" when plaintext, exec of clipserve-client over TLS otherwise.
Call with (dict "ctx" $ "p" .Values.probes.startup).
*/}}
{{- define "clipserve.probe" -}}
{{- if .ctx.Values.tls.enabled }}
exec:
  command:
    {{- include "clipserve.tlsHealthCommand" .ctx | nindent 4 }}
{{- else }}
grpc:
  port: {{ .ctx.Values.server.grpcPort }}
  service: ""
{{- end }}
{{- range $k := list "periodSeconds" "failureThreshold" "successThreshold" "timeoutSeconds" }}
{{- if hasKey $.p $k }}
{{ $k }}: {{ get $.p $k }}
{{- end }}
{{- end }}
{{- end }}
