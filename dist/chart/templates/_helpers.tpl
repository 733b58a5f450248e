{{/* Generated from config/ by `make chart`. */}}

{{/* Every object's name prefix: the release's name, or fullnameOverride. 28 characters leave room for the
longest suffix within a Service name's 63. */}}
{{- define "etcd-op.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 28 | trimSuffix "-" -}}
{{- end -}}

{{- define "etcd-op.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}
