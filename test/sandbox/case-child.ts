/**
 * NOT a test file: the child side of an isolated conformance run (see
 * isolated.ts). Run as
 * `node --import tsx case-child.ts <subject module> <export> <plan json>`
 * inside a test namespace; runs each planned case of the subject and prints
 * one `RESULT {case: outcome}` line.
 */
import { pathToFileURL } from 'node:url';
import { runDriverCases, type DriverSubject } from './driver.case.ts';
import type { PlannedCase } from './isolated.ts';
import { runLayerCases, type LayerSubject } from './layer.case.ts';

const [moduleFile = '', exportName = '', planJson = '[]'] = process.argv.slice(2);
const loaded = (await import(pathToFileURL(moduleFile).href)) as Record<
  string,
  LayerSubject | DriverSubject | undefined
>;
const subject = loaded[exportName];
if (!subject) throw new Error(`${moduleFile} exports no subject "${exportName}"`);
const plan = JSON.parse(planJson) as PlannedCase[];
const outcomes =
  subject.kind === 'layer'
    ? await runLayerCases(subject, plan)
    : await runDriverCases(subject, plan);
console.log(`RESULT ${JSON.stringify(outcomes)}`);
// Whatever a failed case left running must not keep the child (and the test) waiting.
process.exit(0);
