//! The lifetime and call order of one JS engine object (an `Embedder`, `Reranker`,
//! `SearchIndex`, `Generator`…): a [`Slot`] holds the engine, the GPU it lives on and a FIFO
//! lane of calls.
//!
//! - **One call at a time per object.** Every async method goes through [`Slot::call`]: it
//!   starts once the object's previous call has settled (resolved or rejected), so 20
//!   `embed` calls started at once run one after another in the order they were made and give
//!   the same results as 20 awaited calls. Different objects have different lanes, so a
//!   `rerank` can run between the steps of a `generate` stream on another object. Nothing
//!   holds a `RefCell` borrow across an `await`, so there is no "already borrowed" panic.
//! - **`dispose()`** rejects every later call at once with [`Error::Disposed`], lets the calls
//!   already queued finish, then drops the engine and trims the buffer pool, so its GPU
//!   memory is freed. The returned Promise resolves when that is done.
//! - **Device loss.** A call on an object whose device was lost (`GPUDevice.lost`, e.g.
//!   `device.destroy()` or a driver reset) rejects with [`Error::DeviceLost`] telling the user
//!   to load it again; the next `load` acquires a new device (`super::shared_gpu`).
//!
//! A streaming method (generation) runs its whole stream inside one `call`, so the stream
//! holds its own object's lane and no other.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;

use js_sys::Promise;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::error::Error;
use crate::gpu::Gpu;

/// An engine `T` behind a FIFO call lane; see the module docs.
pub(crate) struct Slot<T> {
    /// Class name for error messages ("Embedder").
    what: &'static str,
    gpu: Gpu,
    value: RefCell<Option<Rc<T>>>,
    disposed: Cell<bool>,
    /// The last queued call; the next one starts after it settles.
    tail: RefCell<Option<Promise>>,
}

impl<T: 'static> Slot<T> {
    /// "webgpu" or "cpu": where the engine runs.
    pub(crate) fn device(&self) -> &'static str {
        self.gpu.device_name()
    }
    pub(crate) fn new(what: &'static str, gpu: Gpu, value: T) -> Rc<Self> {
        Rc::new(Self {
            what,
            gpu,
            value: RefCell::new(Some(Rc::new(value))),
            disposed: Cell::new(false),
            tail: RefCell::new(None),
        })
    }

    /// The engine now, for synchronous getters: an error if disposed or the device was lost.
    pub(crate) fn get(&self) -> Result<Rc<T>, Error> {
        if self.disposed.get() {
            return Err(Error::Disposed(self.what));
        }
        self.live()
    }

    /// The engine for a call that was queued before `dispose()`: still there until the
    /// dispose step (queued after it) drops it. Fails if the device was lost meanwhile.
    fn live(&self) -> Result<Rc<T>, Error> {
        let value = self
            .value
            .borrow()
            .clone()
            .ok_or(Error::Disposed(self.what))?;
        if self.gpu.is_lost() {
            let reason = match self.gpu.check_errors() {
                Err(Error::DeviceLost(m)) => m,
                _ => "unknown reason".into(),
            };
            return Err(Error::DeviceLost(format!(
                "{}. This {} lived on that device: load it again (a new load or create acquires a new device)",
                reason.trim_end_matches('.'),
                self.what
            )));
        }
        Ok(value)
    }

    /// Queues `f` behind this object's earlier calls and runs it with the engine. Rejects at
    /// once after `dispose()`.
    pub(crate) fn call<F, Fut>(self: &Rc<Self>, f: F) -> Promise
    where
        F: FnOnce(Rc<T>) -> Fut + 'static,
        Fut: Future<Output = Result<JsValue, JsValue>> + 'static,
    {
        if self.disposed.get() {
            return Promise::reject(&super::js_err(Error::Disposed(self.what)));
        }
        let slot = self.clone();
        self.enqueue(async move {
            let value = slot.live().map_err(super::js_err)?;
            f(value).await
        })
    }

    /// Marks the object disposed (later calls reject), then, after the queued calls, drops
    /// the engine and frees pooled GPU memory. Idempotent.
    pub(crate) fn dispose(self: &Rc<Self>) -> Promise {
        if self.disposed.replace(true) {
            return Promise::resolve(&JsValue::UNDEFINED);
        }
        let slot = self.clone();
        self.enqueue(async move {
            drop(slot.value.borrow_mut().take());
            slot.gpu.trim();
            Ok(JsValue::UNDEFINED)
        })
    }

    fn enqueue(&self, fut: impl Future<Output = Result<JsValue, JsValue>> + 'static) -> Promise {
        let prev = self.tail.borrow_mut().take();
        let p = future_to_promise(async move {
            if let Some(prev) = prev {
                // Its outcome belongs to its own caller; we only wait for it.
                let _ = JsFuture::from(prev).await;
            }
            fut.await
        });
        *self.tail.borrow_mut() = Some(p.clone());
        p
    }
}
