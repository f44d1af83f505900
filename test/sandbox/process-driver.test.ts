import { describeDriverCases } from './driver.case.ts';
import { layeredProcessDriver, layeredRef, plainProcessDriver } from './process-subjects.ts';

describeDriverCases(plainProcessDriver);
describeDriverCases(layeredProcessDriver, { isolated: layeredRef });
