#!/usr/bin/env node
// Entry point of `npm run bench`: runs the TypeScript benchmark harness directly (tsx), no build step.
import { register } from 'tsx/esm/api';

register();
await import('../bench/main.ts');
