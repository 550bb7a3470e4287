// @ts-check
// Whether this browser offers WebGPU: the check the page makes before starting a worker, and the
// engine makes before asking for a device.

import { ErrorCode, LlamaError } from './errors.js';

/**
 * The part of `navigator.gpu` the package uses (TypeScript's DOM types do not have WebGPU yet).
 * @typedef {{requestAdapter(): Promise<{info?: {vendor: string, architecture: string,
 *   description: string, device: string}} | null>}} Gpu
 */

/** `navigator.gpu`, or undefined without WebGPU. @returns {Gpu | undefined} */
export function navigatorGpu() {
  return /** @type {{gpu?: Gpu} | undefined} */ (globalThis.navigator)?.gpu;
}

/**
 * Whether this browser can run the engine: WebGPU with an adapter.
 * @returns {Promise<boolean>}
 */
export async function isSupported() {
  try {
    const gpu = navigatorGpu();
    return !!(gpu && (await gpu.requestAdapter()));
  } catch {
    return false;
  }
}

/**
 * Throws NO_WEBGPU where `navigator.gpu` is missing.
 * @throws {LlamaError} NO_WEBGPU
 */
export function requireWebGpu() {
  if (!navigatorGpu()) {
    throw new LlamaError(ErrorCode.NO_WEBGPU, 'WebGPU is not available in this browser (navigator.gpu is missing); use a recent Chrome or Edge, or enable WebGPU');
  }
}
