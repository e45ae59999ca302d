{{- define "leitwerk.labels" -}}
app.kubernetes.io/name: leitwerk
app.kubernetes.io/component: operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "leitwerk.selector" -}}
app.kubernetes.io/name: leitwerk
app.kubernetes.io/component: operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "leitwerk.serviceAccountName" -}}
{{- default "leitwerk-operator" .Values.serviceAccount.name }}
{{- end }}
