{{/* Names and labels. */}}
{{- define "cdc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cdc.fullname" -}}
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

{{- define "cdc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cdc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The migration pod's: not the Deployment's selector labels, so that the Service and the PDB do not count it. */}}
{{- define "cdc.migrationSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-migrate" (include "cdc.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cdc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cdc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cdc-sync-agent
{{- end }}

{{- define "cdc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cdc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The migration Job runs before the release's own resources exist, so it has hook copies of them. */}}
{{- define "cdc.migrationServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- printf "%s-migrate" (include "cdc.serviceAccountName" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "cdc.serviceAccountName" . }}
{{- end }}
{{- end }}

{{- define "cdc.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret mounted at /var/run/secrets/cdc-agent: an existing one, the chart's, or none. */}}
{{- define "cdc.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else if .Values.secrets.values }}
{{- include "cdc.fullname" . }}
{{- end }}
{{- end }}

{{/* The agent configuration: values.config plus what the chart owns (Key Vault URL). */}}
{{- define "cdc.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if .Values.keyVault.enabled }}
{{- $_ := set $config "keyVault" (dict "url" .Values.keyVault.url "cacheTtl" .Values.keyVault.cacheTtl) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{- define "cdc.healthPort" -}}
{{- $worker := default (dict) .Values.config.worker }}
{{- default 8080 $worker.healthPort }}
{{- end }}

{{- define "cdc.drainGraceSeconds" -}}
{{- $worker := default (dict) .Values.config.worker }}
{{- if hasKey $worker "drainGraceSeconds" }}{{ $worker.drainGraceSeconds }}{{ else }}30{{ end }}
{{- end }}

{{/*
  telemetry.prometheus.port, when it is a port of its own: the agent serves /metrics there as well as on the health
  port, and not twice when the two are the same (`prometheus: {}` means the agent's default, 9464).
*/}}
{{- define "cdc.metricsPort" -}}
{{- $telemetry := default (dict) .Values.config.telemetry }}
{{- if hasKey $telemetry "prometheus" }}
{{- $port := default 9464 (default (dict) $telemetry.prometheus).port | int }}
{{- if ne $port (include "cdc.healthPort" . | int) }}{{ $port }}{{ end }}
{{- end }}
{{- end }}

{{- define "cdc.concurrency" -}}
{{- $worker := default (dict) .Values.config.worker }}
{{- default 2 $worker.concurrency }}
{{- end }}

{{/* The control database's port: networkPolicy's, else config.control.port, else the dialect's. */}}
{{- define "cdc.controlPort" -}}
{{- $control := .Values.config.control }}
{{- $dialectPort := ternary 1433 5432 (eq $control.dialect "mssql") }}
{{- default (default $dialectPort $control.port) .Values.networkPolicy.egress.controlDatabase.port }}
{{- end }}

{{/* The schema of cdc_jobs, for KEDA's query: KEDA's login has its own search path (PostgreSQL). */}}
{{- define "cdc.jobsTable" -}}
{{- $dialect := .dialect }}
{{- $schema := default (ternary "dbo" "public" (eq $dialect "mssql")) .root.Values.keda.tableSchema }}
{{- if eq $dialect "mssql" }}{{ printf "[%s].cdc_jobs" $schema }}{{ else }}{{ printf "%q.cdc_jobs" $schema }}{{ end }}
{{- end }}

{{/* Spreading: `affinity` as given, else the preset's anti-affinity by node and zone. */}}
{{- define "cdc.affinity" -}}
{{- if .Values.affinity }}
{{- toYaml .Values.affinity }}
{{- else if ne .Values.podAntiAffinityPreset "none" }}
{{- $selector := include "cdc.selectorLabels" . }}
podAntiAffinity:
  {{- if eq .Values.podAntiAffinityPreset "hard" }}
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- $selector | nindent 10 }}
  {{- end }}
  preferredDuringSchedulingIgnoredDuringExecution:
    {{- if eq .Values.podAntiAffinityPreset "soft" }}
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- $selector | nindent 12 }}
    {{- end }}
    - weight: 50
      podAffinityTerm:
        topologyKey: topology.kubernetes.io/zone
        labelSelector:
          matchLabels:
            {{- $selector | nindent 12 }}
{{- end }}
{{- end }}

{{/* topologySpreadConstraints through tpl; a constraint without labelSelector counts this release's replicas. */}}
{{- define "cdc.topologySpreadConstraints" -}}
{{- range .Values.topologySpreadConstraints }}
{{- $constraint := tpl (toYaml .) $ | fromYaml }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" (include "cdc.selectorLabels" $ | fromYaml)) }}
{{- end }}
- {{ toYaml $constraint | indent 2 | trim }}
{{- end }}
{{- end }}

{{/*
  Egress of the agent's pods (and, without the SQL Server rule, of the migration pod): DNS, the control database,
  the tenants' SQL Servers and HTTPS (push, Key Vault, Entra ID, Application Insights). An empty `cidrs` allows the
  port to any address: a NetworkPolicy names addresses, not hosts.
*/}}
{{- define "cdc.networkPolicyEgress" -}}
{{- $np := .root.Values.networkPolicy }}
{{- if $np.allowExternalEgress }}
- {}
{{- else }}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
- ports:
    - port: {{ include "cdc.controlPort" .root }}
      protocol: TCP
  {{- with $np.egress.controlDatabase.cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
  {{- end }}
{{- if .sqlServer }}
- ports:
    {{- range $np.egress.sqlServer.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with $np.egress.sqlServer.cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
  {{- end }}
{{- end }}
- ports:
    - port: 443
      protocol: TCP
  {{- with $np.egress.https.cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
  {{- end }}
{{- with $np.egress.extra }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cdc.podLabels" -}}
{{ include "cdc.selectorLabels" . }}
{{- if .Values.workloadIdentity.enabled }}
azure.workload.identity/use: "true"
{{- end }}
{{- with .Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "cdc.serviceAccountAnnotations" -}}
{{- if .Values.workloadIdentity.enabled }}
azure.workload.identity/client-id: {{ required "workloadIdentity.clientId is required when workloadIdentity.enabled" .Values.workloadIdentity.clientId | quote }}
{{- with .Values.workloadIdentity.tenantId }}
azure.workload.identity/tenant-id: {{ . | quote }}
{{- end }}
{{- end }}
{{- with .Values.serviceAccount.annotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Checks that span several values; they fail `helm install` and `helm template` with a clear message. */}}
{{- define "cdc.validate" -}}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are mutually exclusive: KEDA creates its own HorizontalPodAutoscaler" }}
{{- end }}
{{- if and .Values.keyVault.enabled (not .Values.keyVault.url) }}
{{- fail "keyVault.url is required when keyVault.enabled (e.g. https://my-vault.vault.azure.net/)" }}
{{- end }}
{{- if and .Values.keyVault.enabled (not .Values.workloadIdentity.enabled) }}
{{- fail "keyVault.enabled needs workloadIdentity.enabled (with workloadIdentity.clientId): the agent reads the vault with DefaultAzureCredential" }}
{{- end }}
{{- if and .Values.secrets.existingSecret .Values.secrets.values }}
{{- fail "give either secrets.existingSecret or secrets.values, not both" }}
{{- end }}
{{- if gt (.Values.autoscaling.minReplicas | int) (.Values.autoscaling.maxReplicas | int) }}
{{- fail (printf "autoscaling.minReplicas (%v) is above autoscaling.maxReplicas (%v)" .Values.autoscaling.minReplicas .Values.autoscaling.maxReplicas) }}
{{- end }}
{{- if gt (.Values.keda.minReplicaCount | int) (.Values.keda.maxReplicaCount | int) }}
{{- fail (printf "keda.minReplicaCount (%v) is above keda.maxReplicaCount (%v)" .Values.keda.minReplicaCount .Values.keda.maxReplicaCount) }}
{{- end }}
{{- $metricsPort := include "cdc.metricsPort" . }}
{{- if and $metricsPort (eq ($metricsPort | int) (.Values.service.port | int)) }}
{{- fail (printf "config.telemetry.prometheus.port (%s) is service.port, which the Service gives to the health port already: choose another, or the health port itself (%s)" $metricsPort (include "cdc.healthPort" .)) }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (eq .Values.metrics.serviceMonitor.port "metrics") (not $metricsPort) }}
{{- fail "metrics.serviceMonitor.port is metrics, but there is no metrics port: set config.telemetry.prometheus.port to a port other than the health port, or scrape http" }}
{{- end }}
{{- end }}

{{/* The pod's volumes and the agent container's mounts and environment, shared by the Deployment and the migration Job. */}}
{{- define "cdc.volumes" -}}
- name: config
  configMap:
    name: {{ .configMap }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.tmpSizeLimit }}
{{- with .secret }}
- name: secrets
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- with .root.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "cdc.volumeMounts" -}}
- name: config
  mountPath: /etc/cdc-agent
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .secret }}
- name: secrets
  mountPath: /var/run/secrets/cdc-agent
  readOnly: true
{{- end }}
{{- with .root.Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "cdc.env" -}}
- name: CDC_AGENT_CONFIG
  value: /etc/cdc-agent/cdc-agent.yaml
- name: NODE_ENV
  value: production
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
