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

{{- define "cdc.prometheusPort" -}}
{{- $telemetry := default (dict) .Values.config.telemetry }}
{{- if $telemetry.prometheus }}{{ default 9464 $telemetry.prometheus.port }}{{ end }}
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
