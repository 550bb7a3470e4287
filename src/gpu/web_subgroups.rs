//! Subgroups on the web, until wgpu does it.
//!
//! wgpu 30's WebGPU backend neither asks for the `subgroups` feature when it creates a device
//! nor reports it on the device (gfx-rs/wgpu#10146; the fix is not in a release yet), although
//! Chrome has offered it since version 134. Without this file every browser would run the
//! workgroup-memory fallbacks. What this file does instead, as one seam a later wgpu release
//! replaces (request `Features::SUBGROUP` in `device.rs` like the other features, then delete
//! this file):
//!
//! 1. [`SubgroupRequest::install`] wraps `GPUAdapter.prototype.requestDevice` for exactly the
//!    one call that wgpu makes synchronously inside `Adapter::request_device`: the wrapper adds
//!    `'subgroups'` to `requiredFeatures` when that adapter offers it. Dropping the guard puts
//!    the original method back before any other script can run, so nothing else on the page
//!    sees the change.
//! 2. [`device_has`] reads the created `GPUDevice`'s own feature set (through
//!    `Device::as_webgpu`), so the kernels use subgroups only where the browser granted them.
//!
//! The WGSL then needs `enable subgroups;`, which `preprocess.rs` writes on wasm.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
export function install_subgroup_request() {
  const proto = globalThis.GPUAdapter && globalThis.GPUAdapter.prototype;
  const original = proto && proto.requestDevice;
  if (typeof original !== 'function') return null;
  const own = Object.prototype.hasOwnProperty.call(proto, 'requestDevice');
  proto.requestDevice = function (descriptor) {
    const d = Object.assign({}, descriptor);
    const features = Array.from(d.requiredFeatures || []);
    if (this.features.has('subgroups') && !features.includes('subgroups')) features.push('subgroups');
    d.requiredFeatures = features;
    return original.call(this, d);
  };
  return () => {
    if (own) proto.requestDevice = original;
    else delete proto.requestDevice;
  };
}
export function device_has_feature(device, name) {
  return !!(device && device.features && device.features.has(name));
}
"#)]
extern "C" {
    fn install_subgroup_request() -> Option<js_sys::Function>;
    fn device_has_feature(device: &JsValue, name: &str) -> bool;
}

/// While alive, device requests ask for `subgroups` where the adapter offers it. Keep it alive
/// only across the synchronous `Adapter::request_device` call.
pub(super) struct SubgroupRequest(Option<js_sys::Function>);

impl SubgroupRequest {
    /// Wraps `requestDevice`; does nothing where `GPUAdapter` is not a global (the device then
    /// has no subgroups and the fallbacks run).
    pub(super) fn install() -> Self {
        SubgroupRequest(install_subgroup_request())
    }
}

impl Drop for SubgroupRequest {
    fn drop(&mut self) {
        if let Some(restore) = self.0.take() {
            let _ = restore.call0(&JsValue::NULL);
        }
    }
}

/// Whether the browser created `device` with the WebGPU feature `name`.
pub(super) fn device_has(device: &wgpu::Device, name: &str) -> bool {
    device
        .as_webgpu()
        .is_some_and(|d| device_has_feature(d.as_ref(), name))
}
