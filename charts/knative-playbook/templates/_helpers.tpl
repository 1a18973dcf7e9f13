{{/*
Names and labels. Functions keep their own names as Knative Service names (their URLs are
http://<function>.<namespace>.svc.cluster.local, which the workflows and the warmer call), so
install one release per namespace; everything else is prefixed with the release's fullname.
*/}}

{{- define "kp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kp.fullname" -}}
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

{{- define "kp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "kp.labels" -}}
helm.sh/chart: {{ include "kp.chart" . }}
{{ include "kp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: knative-playbook
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "kp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: (dict "ctx" $ "component" "mongodb") */}}
{{- define "kp.componentLabels" -}}
{{ include "kp.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kp.componentSelectorLabels" -}}
{{ include "kp.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Pod labels that open the NetworkPolicies of the data stores: (dict "ctx" $ "spec" $fn) */}}
{{- define "kp.clientLabels" -}}
{{- if .spec.mongo }}
knative-playbook.io/mongo-client: "true"
{{- end }}
{{- if .spec.minioBuckets }}
knative-playbook.io/minio-client: "true"
{{- end }}
{{- end }}

{{/* Image of one of our own services: (dict "ctx" $ "name" "products-api") */}}
{{- define "kp.image" -}}
{{- printf "%s/%s:%s" .ctx.Values.image.repository .name (default .ctx.Chart.AppVersion .ctx.Values.image.tag) }}
{{- end }}

{{- define "kp.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/* Enabled functions, as a dict name -> values with functionDefaults merged in. */}}
{{- define "kp.functions" -}}
{{- $out := dict }}
{{- range $name, $fn := .Values.functions }}
{{- if $fn.enabled }}
{{- $merged := mergeOverwrite (deepCopy $.Values.functionDefaults) (deepCopy $fn) }}
{{- $_ := set $merged "scaling" (mergeOverwrite (deepCopy $.Values.functionDefaults.scaling) (deepCopy (default dict $fn.scaling))) }}
{{- $_ := set $out $name $merged }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* Enabled CronJobs, as a dict name -> values. */}}
{{- define "kp.cronJobs" -}}
{{- $out := dict }}
{{- range $name, $job := .Values.cronJobs }}
{{- if $job.enabled }}
{{- $_ := set $out $name $job }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{- define "kp.serviceAccountName" -}}
{{- printf "%s-%s" (include "kp.fullname" .ctx) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kp.workflowServiceAccountName" -}}
{{- default (printf "%s-workflow" (include "kp.fullname" .)) .Values.workflows.serviceAccountName }}
{{- end }}

{{/* Service names and addresses of the data stores. */}}
{{- define "kp.mongodb.name" -}}
{{- printf "%s-mongodb" (include "kp.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kp.minio.name" -}}
{{- printf "%s-minio" (include "kp.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kp.minio.endpoint" -}}
{{- if .Values.minio.enabled }}
{{- printf "%s.%s.svc.cluster.local:9000" (include "kp.minio.name" .) .Release.Namespace }}
{{- else }}
{{- required "minio.external.endpoint is required when minio.enabled is false" .Values.minio.external.endpoint }}
{{- end }}
{{- end }}

{{- define "kp.minio.secure" -}}
{{- if .Values.minio.enabled }}false{{ else }}{{ .Values.minio.external.secure }}{{ end }}
{{- end }}

{{- define "kp.minio.region" -}}
{{- if .Values.minio.enabled }}us-east-1{{ else }}{{ .Values.minio.external.region }}{{ end }}
{{- end }}

{{/* Secret holding the MinIO admin credentials and the webhook token. */}}
{{- define "kp.minio.secretName" -}}
{{- if and .Values.minio.enabled .Values.minio.auth.existingSecret }}
{{- .Values.minio.auth.existingSecret }}
{{- else if not .Values.minio.enabled }}
{{- required "minio.external.existingSecret is required when minio.enabled is false" .Values.minio.external.existingSecret }}
{{- else }}
{{- include "kp.minio.name" . }}
{{- end }}
{{- end }}

{{- define "kp.mongodb.secretName" -}}
{{- default (include "kp.mongodb.name" .) .Values.mongodb.auth.existingSecret }}
{{- end }}

{{/* The K_SINK every function and job gets: the Broker, by reference. */}}
{{- define "kp.brokerRef" -}}
ref:
  apiVersion: eventing.knative.dev/v1
  kind: Broker
  name: {{ .Values.eventing.broker }}
{{- end }}

{{- define "kp.brokerURL" -}}
{{- printf "http://broker-ingress.%s.svc.cluster.local/%s/%s" .Values.networkPolicy.namespaces.knativeEventing .Release.Namespace .Values.eventing.broker }}
{{- end }}

{{/* Function URL inside the cluster. */}}
{{- define "kp.functionURL" -}}
{{- printf "http://%s.%s.svc.cluster.local" .name .ctx.Release.Namespace }}
{{- end }}

{{/*
A stable generated secret: the value already in the cluster if there is one, else a new
random one. (dict "ctx" $ "secret" NAME "key" KEY "length" N)
*/}}
{{- define "kp.generated" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret }}
{{- if and $existing $existing.data (hasKey $existing.data .key) }}
{{- index $existing.data .key | b64dec }}
{{- else }}
{{- randAlphaNum (int .length) }}
{{- end }}
{{- end }}

{{/* Container securityContext of every container (restricted Pod Security Standard). */}}
{{- define "kp.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Pod securityContext of the Pods that are not Knative's (Knative accepts only a subset). */}}
{{- define "kp.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Knative Trigger delivery, from a Trigger's own keys merged over eventing.delivery. */}}
{{- define "kp.delivery" -}}
{{- $d := mergeOverwrite (deepCopy .ctx.Values.eventing.delivery) (deepCopy (default dict .trigger.delivery)) }}
retry: {{ int $d.retry }}
backoffPolicy: {{ $d.backoffPolicy }}
backoffDelay: {{ $d.backoffDelay }}
{{- with $d.timeout }}
timeout: {{ . }}
{{- end }}
{{- with $d.deadLetterSink }}
deadLetterSink:
  ref:
    apiVersion: serving.knative.dev/v1
    kind: Service
    name: {{ . }}
{{- end }}
{{- end }}

{{/*
Secret environment that does not come from the workload's own Secret: external Secrets named
in values, the shared MinIO credentials, the webhook token. (dict "ctx" $ "name" N "spec" S)
*/}}
{{- define "kp.functionSecretEnv" -}}
{{- $v := .ctx.Values }}
{{- $env := list }}
{{- if .spec.mongo }}
{{- $env = concat $env (include "kp.mongoEnv" .ctx | fromYamlArray) }}
{{- end }}
{{- if and .spec.minioBuckets (not $v.minio.perFunctionCredentials) }}
{{- $secret := include "kp.minio.secretName" .ctx }}
{{- $env = append $env (dict "name" "MINIO_ACCESS_KEY" "valueFrom" (dict "secretKeyRef" (dict "name" $secret "key" "root-user"))) }}
{{- $env = append $env (dict "name" "MINIO_SECRET_KEY" "valueFrom" (dict "secretKeyRef" (dict "name" $secret "key" "root-password"))) }}
{{- end }}
{{- if eq .name "minio-source" }}
{{- $env = append $env (dict "name" "WEBHOOK_AUTH_TOKEN" "valueFrom" (dict "secretKeyRef" (dict "name" (include "kp.minio.secretName" .ctx) "key" "webhook-token"))) }}
{{- end }}
{{- with $env }}
env:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The MONGO_URL of a workload that uses MongoDB, as env entries. Bundled: the password comes
from the MongoDB Secret and Kubernetes expands $(MONGO_PASSWORD) into the URL, so the password
lives in one Secret only. External: from the workload's Secret or an existing Secret.
*/}}
{{- define "kp.mongoEnv" -}}
{{- $v := .Values }}
{{- if $v.mongodb.enabled }}
- name: MONGO_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "kp.mongodb.secretName" . }}
      key: password
- name: MONGO_URL
  value: {{ printf "mongodb://%s:$(MONGO_PASSWORD)@%s.%s.svc.cluster.local:27017/%s?authSource=admin" $v.mongodb.auth.username (include "kp.mongodb.name" .) .Release.Namespace $v.mongodb.database | quote }}
{{- else if $v.mongodb.external.existingSecret }}
- name: MONGO_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.mongodb.external.existingSecret }}
      key: {{ $v.mongodb.external.existingSecretKey }}
{{- end }}
{{- end }}

{{/* The Secret of one workload: its own MinIO credentials, an external MONGO_URL. */}}
{{- define "kp.workloadSecret" -}}
{{- $v := .ctx.Values }}
{{- $secretName := printf "%s-%s" (include "kp.fullname" .ctx) .name }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ $secretName }}
  labels:
    {{- include "kp.componentLabels" (dict "ctx" .ctx "component" .name) | nindent 4 }}
type: Opaque
{{- $data := dict }}
{{- if and .spec.minioBuckets $v.minio.perFunctionCredentials }}
{{- /* Its own MinIO user, created by the minio-users hook Job, allowed only its buckets. */}}
{{- $_ := set $data "MINIO_ACCESS_KEY" .name }}
{{- $_ := set $data "MINIO_SECRET_KEY" (include "kp.generated" (dict "ctx" .ctx "secret" $secretName "key" "MINIO_SECRET_KEY" "length" 40)) }}
{{- end }}
{{- if and .spec.mongo (not $v.mongodb.enabled) (not $v.mongodb.external.existingSecret) }}
{{- $_ := set $data "MONGO_URL" (required "mongodb.external.url or mongodb.external.existingSecret is required when mongodb.enabled is false" $v.mongodb.external.url) }}
{{- end }}
{{- if $data }}
stringData:
  {{- toYaml $data | nindent 2 }}
{{- else }}
stringData: {}
{{- end }}
{{- end }}

{{/* NetworkPolicy building blocks. */}}
{{- define "kp.namespacePeer" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . }}
{{- end }}

{{- define "kp.dnsEgress" -}}
- to:
    {{- include "kp.namespacePeer" .Values.networkPolicy.namespaces.dns | nindent 4 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{/* (dict "ctx" $ "component" "mongodb" "port" 27017 "bundled" true) */}}
{{- define "kp.storeEgress" -}}
{{- if .bundled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "kp.componentSelectorLabels" (dict "ctx" .ctx "component" .component) | nindent 10 }}
  ports:
    - port: {{ .port }}
      protocol: TCP
{{- else }}
{{- $ext := .ctx.Values.networkPolicy.externalServices }}
- to:
    {{- range $ext.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    {{- range $ext.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}

{{- define "kp.apiServerEgress" -}}
{{- $api := .Values.networkPolicy.kubeApiServer }}
# The Kubernetes API server.
- to:
    {{- range $api.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    {{- range $api.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
