{{- define "keymint.labels" -}}
app.kubernetes.io/name: keymint
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "keymint.selector" -}}
app.kubernetes.io/name: keymint
app.kubernetes.io/component: manager
{{- end }}

{{- define "keymint.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default (printf "v%s" .Chart.AppVersion) }}
{{- end }}
