{{/* The name every object's name starts with. */}}
{{- define "dataplane.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "dataplane.labels" -}}
app.kubernetes.io/part-of: dataplane
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one component: (list $ "sentinel"). */}}
{{- define "dataplane.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "dataplane.fullname" $ }}-{{ index . 1 }}
app.kubernetes.io/instance: {{ $.Release.Name }}
{{- end -}}

{{/* Labels of one component's pods: selector labels, part-of, gossip. */}}
{{- define "dataplane.podLabels" -}}
{{ include "dataplane.selectorLabels" . }}
app.kubernetes.io/part-of: dataplane
dataplane.io/gossip: "true"
{{- end -}}

{{/* The image. */}}
{{- define "dataplane.image" -}}
image: {{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- with .Values.image.pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end -}}

{{/* The gossip seeds, as a list. */}}
{{- define "dataplane.seeds" -}}
{{- if .Values.gossip.seeds -}}
{{- toJson .Values.gossip.seeds -}}
{{- else -}}
{{- list (printf "%s-gossip.%s.svc.cluster.local:%d" (include "dataplane.fullname" .) .Release.Namespace (int .Values.gossip.port)) | toJson -}}
{{- end -}}
{{- end -}}

{{/* The cache nodes' URLs, comma-separated: the sentinels' origin. */}}
{{- define "dataplane.cachenodeURLs" -}}
{{- $full := include "dataplane.fullname" . -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.cachenode.replicas) -}}
{{- $urls = append $urls (printf "http://%s-cachenode-%d.%s-cachenode.%s.svc.cluster.local:%d" $full $i $full $.Release.Namespace (int $.Values.cachenode.port)) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}

{{/* One command's -config file: (list $ extra-settings component-config). */}}
{{- define "dataplane.config" -}}
{{- $ := index . 0 -}}
{{- $cfg := dict "origin" $.Values.origin "region" $.Values.region "log-level" $.Values.logLevel "gossip-bind" (printf "0.0.0.0:%d" (int $.Values.gossip.port)) "seeds" (include "dataplane.seeds" $ | fromJsonArray) -}}
{{- $cfg = mergeOverwrite $cfg (deepCopy (index . 1)) (deepCopy (index . 2)) -}}
{{- toPrettyJson $cfg -}}
{{- end -}}

{{/* The pod's security context and service account. */}}
{{- define "dataplane.podSpec" -}}
serviceAccountName: {{ include "dataplane.fullname" . }}
automountServiceAccountToken: false
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  fsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* The container's security context. */}}
{{- define "dataplane.containerSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{/* The environment every gossiping container starts with. */}}
{{- define "dataplane.gossipEnv" -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: DATAPLANE_GOSSIP_ADVERTISE
  value: "$(POD_IP):{{ .Values.gossip.port }}"
- name: DATAPLANE_GOSSIP_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.gossip }}
      key: gossip-key
{{- end -}}

{{/* An env entry from a Secret: (list name secret key). */}}
{{- define "dataplane.secretEnv" -}}
- name: {{ index . 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ index . 1 }}
      key: {{ index . 2 }}
{{- end -}}

{{/* Gossip container ports. */}}
{{- define "dataplane.gossipPorts" -}}
- name: gossip-tcp
  containerPort: {{ .Values.gossip.port }}
  protocol: TCP
- name: gossip-udp
  containerPort: {{ .Values.gossip.port }}
  protocol: UDP
{{- end -}}

{{/* Probes on a named port: /readyz and /healthz, which every command serves. */}}
{{- define "dataplane.probes" -}}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ . }}
  periodSeconds: 5
  failureThreshold: 2
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ . }}
  initialDelaySeconds: 10
  periodSeconds: 10
  failureThreshold: 3
{{- end -}}

{{/* The config volume mount. */}}
{{- define "dataplane.configMount" -}}
- name: config
  mountPath: /etc/dataplane
  readOnly: true
{{- end -}}

{{/* A Secret value: given (index 3), or kept from the Secret the last release
     made (lookup finds nothing under helm template), or generated (index 4):
     (list $ secret key given generated). Base64, for data. */}}
{{- define "dataplane.keep" -}}
{{- $ := index . 0 -}}
{{- $old := lookup "v1" "Secret" $.Release.Namespace (index . 1) -}}
{{- if index . 3 -}}
{{- index . 3 | b64enc -}}
{{- else if and $old (hasKey $old.data (index . 2)) -}}
{{- index $old.data (index . 2) -}}
{{- else -}}
{{- index . 4 | b64enc -}}
{{- end -}}
{{- end }}
