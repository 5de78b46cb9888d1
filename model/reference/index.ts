// Every fixture kind the engine knows. Importing this module registers them all.
import './ops.ts';
import './sched.ts';
import './image.ts';
import './ops_tokenizer.ts';
import './dit.ts';
import './ops_norm.ts';
import './ops_rope.ts';
import './ops_rng.ts';
import './pipeline.ts';
import './t5.ts';
import './ops_conv_layout.ts';
import './vae.ts';
import './ops_linear.ts';
import './ops_attention.ts';
export { verifyFixture, expandFixtureDirs, knownKinds, fixtureKind, registerKind, type VerifyResult, type FixtureKind } from './registry.ts';
export { compareOutput, type OutputCheck } from './compare.ts';
