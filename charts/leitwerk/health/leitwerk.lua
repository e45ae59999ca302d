-- Argo CD health check for every Leitwerk kind (FeatureSet, Model, Experiment, RagIndex,
-- ContentPipeline, LeitwerkPolicy). Argo CD runs it with the live object as `obj` and reads the table it
-- returns. Install it under `resource.customizations.health.leitwerk.dev_<Kind>` in the
-- argocd-cm ConfigMap (see charts/leitwerk/README.md).
--
-- Healthy: the resource does what it is for (a snapshot published, a version serving, a
-- canary promoted, an index serving, content published). Suspended: it waits for a person
-- (a paused Experiment, a run awaiting an editor's approval). Degraded: something failed or a
-- gate said no (the operator's Stalled condition, a failed or rejected phase). Progressing:
-- everything else, including a generation the operator has not observed yet.

local healthy = {
  FeatureSet = {Ready = true},
  Model = {Serving = true},
  Experiment = {Promoted = true, Concluded = true, Running = true},
  RagIndex = {Ready = true},
  ContentPipeline = {Published = true},
}
local degraded = {
  FeatureSet = {QualityFailed = true, Failed = true, Invalid = true},
  Model = {Failed = true, Rejected = true, Invalid = true},
  Experiment = {RolledBack = true, Invalid = true},
  RagIndex = {Failed = true, Invalid = true},
  ContentPipeline = {Failed = true, Rejected = true, Invalid = true},
}
local suspended = {
  Experiment = {Paused = true},
  ContentPipeline = {AwaitingApproval = true},
}

local function condition(status, type)
  if status.conditions == nil then return nil end
  for _, c in ipairs(status.conditions) do
    if c.type == type then return c end
  end
  return nil
end

local function policy_health(obj)
  -- A LeitwerkPolicy runs nothing: it is healthy once the operator has read it.
  local status = obj.status
  if status == nil or status.namespaces == nil then
    return {status = "Progressing", message = "Waiting for the Leitwerk operator"}
  end
  local message = "governs " .. #status.namespaces .. " namespaces"
  if status.lastDenial ~= nil then
    message = message .. "; last denial: " .. status.lastDenial
  end
  return {status = "Healthy", message = message}
end

local function health(obj)
  if obj.kind == "LeitwerkPolicy" then return policy_health(obj) end
  local status = obj.status
  if status == nil or status.phase == nil then
    return {status = "Progressing", message = "Waiting for the Leitwerk operator"}
  end
  local generation = obj.metadata.generation
  if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
    return {status = "Progressing", message = "Waiting for the operator to observe generation " .. generation}
  end
  local phase = status.phase
  local ready = condition(status, "Ready")
  local message = phase
  if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
    message = phase .. ": " .. ready.message
  end
  local kind = obj.kind
  local stalled = condition(status, "Stalled")
  if (degraded[kind] ~= nil and degraded[kind][phase]) or (stalled ~= nil and stalled.status == "True") then
    return {status = "Degraded", message = message}
  end
  if suspended[kind] ~= nil and suspended[kind][phase] then
    return {status = "Suspended", message = message}
  end
  if healthy[kind] ~= nil and healthy[kind][phase] then
    return {status = "Healthy", message = message}
  end
  return {status = "Progressing", message = message}
end

return health(obj)
