{{/* Names and labels. */}}
{{- define "sse-enforcer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sse-enforcer.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "sse-enforcer.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "sse-enforcer.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "sse-enforcer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sse-enforcer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sse-enforcer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sse-enforcer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The `helm test` pod: never the enforcer's selector labels (the Service, PDB and NetworkPolicy
select on those), but what the NetworkPolicy admits to the health port. */}}
{{- define "sse-enforcer.testLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: helm-test
{{- end }}

{{- define "sse-enforcer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sse-enforcer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest when image.digest is set (it wins over the tag), else repository:tag. */}}
{{- define "sse-enforcer.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The S3 CA bundle's volume source (a ConfigMap or Secret), or "" when none is configured. */}}
{{- define "sse-enforcer.s3CaSource" -}}
{{- $ca := .Values.s3.caBundle }}
{{- if $ca.existingSecret }}secret
{{- else if or $ca.existingConfigMap $ca.pem }}configMap
{{- end }}
{{- end }}

{{- define "sse-enforcer.s3CaName" -}}
{{- $ca := .Values.s3.caBundle }}
{{- if $ca.existingSecret }}{{ $ca.existingSecret }}
{{- else if $ca.existingConfigMap }}{{ $ca.existingConfigMap }}
{{- else if $ca.pem }}{{ include "sse-enforcer.fullname" . }}-s3-ca
{{- end }}
{{- end }}

{{/* Egress presets (networkPolicy.egressPresets): TCP ports to any address, or one address. */}}
{{- define "sse-enforcer.egressPresets" -}}
kafka: {ports: [9092]}
msk-iam: {ports: [9098]}
msk-tls: {ports: [9094]}
msk-scram: {ports: [9096]}
minio: {ports: [9000]}
kes: {ports: [7373]}
https: {ports: [443]}
otlp: {ports: [4318]}
aws-metadata: {cidr: 169.254.169.254/32, ports: [80]}
eks-pod-identity: {cidr: 169.254.170.23/32, ports: [80]}
{{- end }}

{{/* The port of otel.endpoint (its explicit port, else 443 for https and 80 for http). */}}
{{- define "sse-enforcer.otlpPort" -}}
{{- $url := urlParse .Values.otel.endpoint }}
{{- $host := splitList ":" $url.host }}
{{- if gt (len $host) 1 }}{{ last $host }}
{{- else if eq $url.scheme "https" }}443
{{- else }}80
{{- end }}
{{- end }}

{{/* Secrets: the existing one named in values, else the one the chart creates (or ""). */}}
{{- define "sse-enforcer.s3Secret" -}}
{{- if .Values.s3.existingSecret }}{{ .Values.s3.existingSecret }}
{{- else if .Values.s3.accessKeyId }}{{ include "sse-enforcer.fullname" . }}-s3
{{- end }}
{{- end }}

{{- define "sse-enforcer.kmsSecret" -}}
{{- if .Values.kms.existingSecret }}{{ .Values.kms.existingSecret }}
{{- else if or .Values.kms.clientCert .Values.kms.apiKey }}{{ include "sse-enforcer.fullname" . }}-kms
{{- end }}
{{- end }}

{{- define "sse-enforcer.kafkaSecret" -}}
{{- if .Values.kafka.existingSecret }}{{ .Values.kafka.existingSecret }}
{{- else if .Values.kafka.username }}{{ include "sse-enforcer.fullname" . }}-kafka
{{- end }}
{{- end }}

{{- define "sse-enforcer.kafkaSasl" -}}
{{- hasPrefix "SASL_" .Values.kafka.securityProtocol }}
{{- end }}

{{- define "sse-enforcer.kafkaPassword" -}}
{{- and (eq (include "sse-enforcer.kafkaSasl" .) "true") (ne .Values.kafka.saslMechanism "OAUTHBEARER") }}
{{- end }}

{{- define "sse-enforcer.kafkaTls" -}}
{{- has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}
{{- end }}

{{/* Rules that values.schema.json cannot express. */}}
{{- define "sse-enforcer.checks" -}}
{{- $partitions := int .Values.partitions }}
{{- if and (not .Values.autoscaling.enabled) (gt (int .Values.replicaCount) $partitions) }}
{{- fail (printf "replicaCount (%d) exceeds partitions (%d): members beyond the partition count idle" (int .Values.replicaCount) $partitions) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.maxReplicaCount) $partitions) }}
{{- fail (printf "autoscaling.maxReplicaCount (%d) exceeds partitions (%d): KEDA would add members that get no partition" (int .Values.autoscaling.maxReplicaCount) $partitions) }}
{{- end }}
{{- if gt (int .Values.autoscaling.minReplicaCount) (int .Values.autoscaling.maxReplicaCount) }}
{{- fail "autoscaling.minReplicaCount exceeds autoscaling.maxReplicaCount" }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.shutdownTimeout) }}
{{- fail "terminationGracePeriodSeconds must exceed shutdownTimeout, or the kubelet kills in-flight work" }}
{{- end }}
{{- if and (eq (include "sse-enforcer.kafkaSasl" .) "true") (not .Values.kafka.saslMechanism) }}
{{- fail "kafka.saslMechanism is required with a SASL_* kafka.securityProtocol" }}
{{- end }}
{{- if and (eq .Values.kafka.saslMechanism "OAUTHBEARER") (not .Values.kafka.saslAwsRegion) }}
{{- fail "kafka.saslAwsRegion is required with kafka.saslMechanism OAUTHBEARER (MSK IAM)" }}
{{- end }}
{{- if and .Values.kafka.tls.existingSecret (ne (include "sse-enforcer.kafkaTls" .) "true") }}
{{- fail "kafka.tls.existingSecret needs kafka.securityProtocol SSL or SASL_SSL" }}
{{- end }}
{{- if and (eq .Values.kms.kind "kes") (not (include "sse-enforcer.kmsSecret" .)) }}
{{- fail "kms.kind kes needs kms.existingSecret, or kms.clientCert + kms.clientKey, or kms.apiKey" }}
{{- end }}
{{- $ca := .Values.s3.caBundle }}
{{- if gt (len (compact (list $ca.pem $ca.existingConfigMap $ca.existingSecret))) 1 }}
{{- fail "s3.caBundle: give one of pem, existingConfigMap, existingSecret" }}
{{- end }}
{{- end }}

{{/* "true" when the worker count comes from the container's CPU limit (downward API). */}}
{{- define "sse-enforcer.workersFromLimit" -}}
{{- if and (not .Values.workers) .Values.resources.limits .Values.resources.limits.cpu -}}true{{- end -}}
{{- end }}
