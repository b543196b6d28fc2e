{{/* Names and labels. */}}
{{- define "portcullis.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "portcullis.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "portcullis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The Secret the gateways read: one made elsewhere, or the chart's. */}}
{{- define "portcullis.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "portcullis.fullname" .) -}}
{{- end -}}

{{/*
Settings that go together, checked before anything is rendered (the gateway would refuse them at
start, one pod after the other).
*/}}
{{- define "portcullis.validate" -}}
{{- $grace := int .Values.config.shutdownGraceSecs -}}
{{- if or (lt $grace 1) (gt $grace 25) -}}
{{- fail "config.shutdownGraceSecs: between 1 and 25 seconds" -}}
{{- end -}}
{{- if le (int .Values.terminationGracePeriodSeconds) $grace -}}
{{- fail "terminationGracePeriodSeconds must be above config.shutdownGraceSecs (Kubernetes kills the gateway then)" -}}
{{- end -}}
{{- if not .Values.secrets.existingSecret -}}
{{- $key := required "secrets.secretKey: 64 hex characters shared by every gateway (openssl rand -hex 32), or name your own Secret in secrets.existingSecret" .Values.secrets.secretKey -}}
{{- if not (regexMatch "^[0-9a-fA-F]{64}$" $key) -}}
{{- fail "secrets.secretKey: must be 64 hex characters (openssl rand -hex 32)" -}}
{{- end -}}
{{- if and .Values.config.store.passwordFromSecret (not .Values.secrets.storePassword) -}}
{{- fail "secrets.storePassword: needed with config.store.passwordFromSecret (or set that to false)" -}}
{{- end -}}
{{- if and .Values.config.objectStore.accessKeyId (not .Values.secrets.objectStoreSecretAccessKey) -}}
{{- fail "secrets.objectStoreSecretAccessKey: needed with config.objectStore.accessKeyId" -}}
{{- end -}}
{{- if and .Values.config.ops.metricsTokenFromSecret (lt (len .Values.secrets.metricsToken) 16) -}}
{{- fail "secrets.metricsToken: at least 16 characters with config.ops.metricsTokenFromSecret" -}}
{{- end -}}
{{- if and .Values.config.recordingSigningKeyFromSecret (not .Values.secrets.recordingSigningKey) -}}
{{- fail "secrets.recordingSigningKey: needed with config.recordingSigningKeyFromSecret" -}}
{{- end -}}
{{- end -}}
{{- end -}}
