/**
 * The function spec (DESIGN §7): its zod schema, parsing with registered
 * errors, and the plain types every layer shares (node, store, api, cli).
 */
export {
  parseSpec,
  parseDeployBody,
  fieldIssues,
  FunctionSpecSchema,
  AutoscalingSchema,
  AUTOSCALE_POLICY_NAMES,
  type AutoscalingSpec,
  FunctionNameSchema,
  isFunctionName,
  type FunctionSpec,
  type FunctionSource,
  type FieldIssue,
  type Runtime,
} from './function.ts';
export {
  AliasNameSchema,
  AliasBodySchema,
  VersionNumberSchema,
  applyConfigPatch,
  mergePatch,
  parseQualifier,
  type AliasBody,
  type VersionSelector,
} from './versions.ts';
