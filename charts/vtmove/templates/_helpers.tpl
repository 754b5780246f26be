{{/* Names, labels and shared values for the vtmove chart. */}}

{{/* Release-scoped name, at most 63 characters (a DNS label). */}}
{{- define "vtmove.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vtmove.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vtmove.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vtmove.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "vtmove.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vtmove.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "vtmove.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The global topology's etcd endpoints: a comma-separated string, or a list joined with commas. */}}
{{- define "vtmove.topoAddress" -}}
{{- $addr := .Values.topology.globalServerAddress -}}
{{- if kindIs "slice" $addr -}}{{- $addr = join "," $addr -}}{{- end -}}
{{- required "topology.globalServerAddress is required (comma-separated etcd endpoints of the Vitess global topology)" $addr -}}
{{- end -}}

{{/*
RBAC rules vtmove needs in every namespace it watches. They must match src/rbac.rs
(REQUIRED_ACCESS, scope WatchedNamespaces) exactly; tests/helm_chart.rs checks both directions.
*/}}
{{- define "vtmove.watchedRules" -}}
- apiGroups: ["vtmove.dev"]
  resources: ["movetablesworkflows", "keyspaces"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["vtmove.dev"]
  resources: ["movetablesworkflows/status", "keyspaces/status"]
  verbs: ["get", "patch"]
- apiGroups: ["vtmove.dev"]
  resources: ["movetablesworkflows/finalizers", "keyspaces/finalizers"]
  verbs: ["update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* RBAC rules for the release namespace only (scope OperatorNamespace in src/rbac.rs). */}}
{{- define "vtmove.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update", "patch"]
{{- end -}}

{{/*
host:port of the metrics and health server. An IPv6 address is put in brackets; "$(POD_IP)" is
expanded by the kubelet from the pod's environment.
*/}}
{{- define "vtmove.metricsBind" -}}
{{- $host := .Values.metrics.bindAddress | default "0.0.0.0" -}}
{{- if contains ":" $host -}}
[{{ $host }}]:{{ .Values.metrics.port }}
{{- else -}}
{{ $host }}:{{ .Values.metrics.port }}
{{- end -}}
{{- end }}
