{{- define "ferry-coordinator.labels" -}}
app.kubernetes.io/name: ferry-coordinator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
