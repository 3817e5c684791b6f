{{/* The objects' name: the release's, or RELEASE-nriguard. */}}
{{- define "nriguard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The pod annotation containerd's NRI validator reads (install/containerd/nriguard.toml). */}}
{{- define "nriguard.tolerateKey" -}}tolerate-missing-plugins.nriguard.io{{- end -}}

{{/* metrics_addr: ADDRESS:PORT, [ADDRESS]:PORT for IPv6, "" when off. */}}
{{- define "nriguard.metricsAddr" -}}
{{- if .Values.metrics.enabled -}}
{{- if contains ":" (toString .Values.metrics.address) -}}
{{- printf "[%s]:%v" .Values.metrics.address .Values.metrics.port -}}
{{- else -}}
{{- printf "%s:%v" .Values.metrics.address .Values.metrics.port -}}
{{- end -}}
{{- end -}}
{{- end -}}
