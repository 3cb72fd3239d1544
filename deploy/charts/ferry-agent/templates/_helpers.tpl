{{- define "ferry-agent.labels" -}}
app.kubernetes.io/name: ferry-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- define "ferry-agent.subject" -}}
- kind: ServiceAccount
  name: {{ .Release.Name }}
  namespace: {{ .Release.Namespace }}
{{- end }}
