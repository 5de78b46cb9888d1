#!/usr/bin/env node
// Entry point of the `wan` command: runs the TypeScript sources directly (tsx), no build step.
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
