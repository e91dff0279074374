use std::collections::HashMap;

use crate::error::{Error, Result};

/// Where model files come from. Paths are relative to the model's root (`config.json`,
/// `model.safetensors`, `1_Pooling/config.json`).
#[allow(async_fn_in_trait)]
pub trait Source {
    /// The whole file (configs, tokenizer). `Error::NotFound` if it does not exist.
    async fn read(&self, file: &str) -> Result<Vec<u8>>;
    /// `len` bytes of `file` starting at `offset`. Fewer bytes is an error.
    async fn read_range(&self, file: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Length of `file` in bytes.
    async fn len(&self, file: &str) -> Result<u64>;
    /// A name for messages (a folder or a URL).
    fn describe(&self) -> String;
    /// Whether ranged reads of `file` transfer only the range. An HTTP server that ignores
    /// `Range` (200 with the whole body) does not; the streaming loader then reads the file
    /// once, in order, with [`Self::read_sequential`].
    async fn ranged(&self, _file: &str) -> Result<bool> {
        Ok(true)
    }
    /// Drops whatever a cache in this source holds of `file` (after a failed integrity
    /// check), so the next read fetches it anew. Sources without a cache do nothing.
    async fn evict(&self, _file: &str) -> Result<()> {
        Ok(())
    }
    /// [`Self::read_range`] for the streaming loader: sources backed by `fetch` or the Cache
    /// API return the bytes as a JS array ([`Chunk::Js`]) that goes to the GPU without being
    /// copied into wasm memory. The default reads into the heap.
    async fn read_chunk(&self, file: &str, offset: u64, len: u64) -> Result<Chunk> {
        Ok(Chunk::Host(self.read_range(file, offset, len).await?))
    }
    /// Reads `file` from `offset` to its end in order, handing the bytes to `sink` as they
    /// arrive (pieces of any size); stops early when `sink` returns `Ok(false)`.
    async fn read_sequential(&self, file: &str, offset: u64, sink: &mut dyn FnMut(&[u8]) -> Result<bool>) -> Result<()> {
        let len = self.len(file).await?;
        let mut at = offset;
        while at < len {
            let n = (len - at).min(8 << 20);
            if !sink(&self.read_range(file, at, n).await?)? {
                break;
            }
            at += n;
        }
        Ok(())
    }
}

/// Bytes of one streamed request: in wasm memory, or (browser) still in a JS array.
pub enum Chunk {
    Host(Vec<u8>),
    #[cfg(target_arch = "wasm32")]
    Js(js_sys::Uint8Array),
}

impl Chunk {
    pub fn len(&self) -> u64 {
        match self {
            Chunk::Host(b) => b.len() as u64,
            #[cfg(target_arch = "wasm32")]
            Chunk::Js(a) => a.length() as u64,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// All bytes in wasm memory.
    pub fn into_host(self) -> Vec<u8> {
        match self {
            Chunk::Host(b) => b,
            #[cfg(target_arch = "wasm32")]
            Chunk::Js(a) => a.to_vec(),
        }
    }
}

fn short_read(file: &str, offset: u64, len: u64, got: usize) -> Error {
    Error::Io { file: file.to_string(), msg: format!("range {offset}+{len}: got only {got} bytes") }
}

/// Files in memory (tests and fixtures).
#[derive(Default, Clone)]
pub struct MemSource {
    pub files: HashMap<String, Vec<u8>>,
}

impl MemSource {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with(mut self, file: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.files.insert(file.to_string(), bytes.into());
        self
    }
    fn get(&self, file: &str) -> Result<&Vec<u8>> {
        self.files.get(file).ok_or_else(|| Error::NotFound { file: file.to_string() })
    }
}

impl Source for MemSource {
    async fn read(&self, file: &str) -> Result<Vec<u8>> {
        Ok(self.get(file)?.clone())
    }
    async fn read_range(&self, file: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let data = self.get(file)?;
        let end = offset.checked_add(len).filter(|&e| e <= data.len() as u64);
        match end {
            Some(end) => Ok(data[offset as usize..end as usize].to_vec()),
            None => Err(short_read(file, offset, len, data.len().saturating_sub(offset as usize))),
        }
    }
    async fn len(&self, file: &str) -> Result<u64> {
        Ok(self.get(file)?.len() as u64)
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

/// A model folder on disk (native only).
#[derive(Clone, Debug)]
pub struct FileSource {
    root: std::path::PathBuf,
}

impl FileSource {
    pub fn new(root: impl Into<std::path::PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// A model given on the command line: a folder, or a weights file (`x.gguf`,
    /// `x.safetensors`) whose folder is the root. Also returns the weights file name when it
    /// is not one a folder is searched for by default: the file given, or the one `.gguf`
    /// file of a folder without `model.safetensors` / its index / `model.gguf`.
    pub fn open_model(path: impl AsRef<std::path::Path>) -> Result<(Self, Option<String>)> {
        let path = path.as_ref();
        let io = |e: std::io::Error| Error::Io { file: path.display().to_string(), msg: e.to_string() };
        if path.is_file() {
            let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| Error::Input(format!("{}: not a file name", path.display())))?;
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            return Ok((Self::new(dir), Some(name.to_string())));
        }
        let defaults = ["model.safetensors", "model.safetensors.index.json", super::weights::GGUF_WEIGHTS];
        if defaults.iter().any(|f| path.join(f).is_file()) {
            return Ok((Self::new(path), None));
        }
        let mut ggufs: Vec<String> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".gguf"))
            .collect();
        ggufs.sort();
        match ggufs.len() {
            1 => Ok((Self::new(path), ggufs.pop())),
            0 => Ok((Self::new(path), None)),
            _ => Err(Error::Input(format!("{} holds several .gguf files ({}): name one", path.display(), ggufs.join(", ")))),
        }
    }
    fn path(&self, file: &str) -> std::path::PathBuf {
        self.root.join(file)
    }
    fn read_range_blocking(&self, file: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(self.path(file)).map_err(|e| self.io(file, e))?;
        f.seek(SeekFrom::Start(offset)).map_err(|e| self.io(file, e))?;
        // Sized up front: growing by doubling could hold twice the range while it reads.
        let file_len = f.metadata().map_err(|e| self.io(file, e))?.len();
        let mut buf = Vec::with_capacity(len.min(file_len.saturating_sub(offset)) as usize);
        f.take(len).read_to_end(&mut buf).map_err(|e| self.io(file, e))?;
        if (buf.len() as u64) < len {
            return Err(short_read(file, offset, len, buf.len()));
        }
        Ok(buf)
    }
    fn io(&self, file: &str, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound { file: self.path(file).display().to_string() }
        } else {
            Error::Io { file: self.path(file).display().to_string(), msg: e.to_string() }
        }
    }
}

impl Source for FileSource {
    async fn read(&self, file: &str) -> Result<Vec<u8>> {
        std::fs::read(self.path(file)).map_err(|e| self.io(file, e))
    }
    /// Reads on a thread of its own, so the streaming loader's `concurrency` requests read
    /// the file in parallel while the caller's task uploads the ones that have arrived.
    async fn read_range(&self, file: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let (this, name) = (self.clone(), file.to_string());
            on_thread(move || this.read_range_blocking(&name, offset, len)).await
        }
        #[cfg(target_arch = "wasm32")]
        self.read_range_blocking(file, offset, len)
    }
    async fn len(&self, file: &str) -> Result<u64> {
        std::fs::metadata(self.path(file)).map(|m| m.len()).map_err(|e| self.io(file, e))
    }
    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

/// Runs `f` on a new OS thread (native); the future resolves with its result, so several of
/// them make progress at once under any executor, `pollster` included. Where a thread
/// cannot be started, `f` runs inline.
#[cfg(not(target_arch = "wasm32"))]
fn on_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> impl std::future::Future<Output = T> {
    use std::sync::{Arc, Mutex};
    use std::task::{Poll, Waker};
    struct Slot<T> {
        value: Option<T>,
        waker: Option<Waker>,
    }
    let slot = Arc::new(Mutex::new(Slot { value: None, waker: None }));
    let f = Arc::new(Mutex::new(Some(f)));
    let (thread_slot, thread_f) = (slot.clone(), f.clone());
    let spawned = std::thread::Builder::new().name("gllm-read".into()).spawn(move || {
        let Some(f) = thread_f.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let value = f();
        let mut s = thread_slot.lock().unwrap_or_else(|e| e.into_inner());
        s.value = Some(value);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    });
    if spawned.is_err() {
        if let Some(f) = f.lock().unwrap_or_else(|e| e.into_inner()).take() {
            slot.lock().unwrap_or_else(|e| e.into_inner()).value = Some(f());
        }
    }
    std::future::poll_fn(move |cx| {
        let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    })
}

/// `fetch` of files under a base URL (browser main thread or worker). Ranges use the HTTP
/// `Range` header; a server that ignores it (200 with the whole body) still works, at the
/// cost of transferring the whole file for that request.
#[cfg(target_arch = "wasm32")]
#[derive(Clone, Debug)]
pub struct HttpSource {
    base: String,
}

#[cfg(target_arch = "wasm32")]
impl HttpSource {
    pub fn new(base: &str) -> Self {
        Self { base: base.trim_end_matches('/').to_string() }
    }
    fn url(&self, file: &str) -> String {
        format!("{}/{}", self.base, file)
    }

    /// GET with an optional `Range` header; returns (status, headers, body).
    async fn get(&self, file: &str, range: Option<(u64, u64)>) -> Result<(u16, web_sys::Headers, Vec<u8>)> {
        let (status, headers, body) = self.get_js(file, range).await?;
        Ok((status, headers, body.to_vec()))
    }

    /// [`Self::get`] with the body left in a JS array.
    async fn get_js(&self, file: &str, range: Option<(u64, u64)>) -> Result<(u16, web_sys::Headers, js_sys::Uint8Array)> {
        let (status, headers, resp) = self.fetch(file, range).await?;
        let url = self.url(file);
        let io = |msg: String| Error::Io { file: url.clone(), msg };
        let buf = wasm_bindgen_futures::JsFuture::from(resp.array_buffer().map_err(|e| io(format!("{e:?}")))?)
            .await
            .map_err(|e| io(format!("{e:?}")))?;
        Ok((status, headers, js_sys::Uint8Array::new(&buf)))
    }

    /// Status and headers of a GET; the body is left unread (cancel it or read it).
    async fn fetch(&self, file: &str, range: Option<(u64, u64)>) -> Result<(u16, web_sys::Headers, web_sys::Response)> {
        use wasm_bindgen::JsCast;
        let url = self.url(file);
        let io = |msg: String| Error::Io { file: url.clone(), msg };
        let init = web_sys::RequestInit::new();
        init.set_method("GET");
        if let Some((start, end)) = range {
            let headers = web_sys::Headers::new().map_err(|e| io(format!("{e:?}")))?;
            headers.set("Range", &format!("bytes={start}-{end}")).map_err(|e| io(format!("{e:?}")))?;
            init.set_headers(&headers);
        }
        let request = web_sys::Request::new_with_str_and_init(&url, &init).map_err(|e| io(format!("{e:?}")))?;
        // `fetch` of the global scope, so this works in a window and in a worker.
        let global = js_sys::global();
        let fetch: js_sys::Function = js_sys::Reflect::get(&global, &"fetch".into())
            .map_err(|e| io(format!("{e:?}")))?
            .dyn_into()
            .map_err(|_| io("no fetch in this global scope".into()))?;
        let promise: js_sys::Promise = fetch
            .call1(&global, &request)
            .map_err(|e| io(format!("{e:?}")))?
            .dyn_into()
            .map_err(|_| io("fetch did not return a promise".into()))?;
        let resp: web_sys::Response = wasm_bindgen_futures::JsFuture::from(promise)
            .await
            .map_err(|e| io(format!("network error: {e:?}")))?
            .dyn_into()
            .map_err(|_| io("fetch did not return a Response".into()))?;
        let status = resp.status();
        if status == 404 {
            return Err(Error::NotFound { file: url });
        }
        if !(200..300).contains(&status) {
            return Err(io(format!("HTTP {status}")));
        }
        // Development servers with a single-page-app fallback (Vite's, by default) answer a
        // missing file with index.html and status 200. An HTML page for a file that is not
        // HTML is such an answer: the file is absent (an optional config, no manifest).
        let html = resp.headers().get("Content-Type").ok().flatten().is_some_and(|t| t.trim_start().starts_with("text/html"));
        if html && !(file.ends_with(".html") || file.ends_with(".htm")) {
            Self::cancel_body(&resp);
            return Err(Error::NotFound { file: url });
        }
        Ok((status, resp.headers(), resp))
    }

    /// Cancels a response's body without reading it.
    fn cancel_body(resp: &web_sys::Response) {
        let body = js_sys::Reflect::get(resp, &"body".into()).unwrap_or_default();
        if let Ok(cancel) = js_sys::Reflect::get(&body, &"cancel".into()) {
            if let Some(f) = wasm_bindgen::JsCast::dyn_ref::<js_sys::Function>(&cancel) {
                let _ = f.call0(&body);
            }
        }
    }
}

#[cfg(target_arch = "wasm32")]
impl Source for HttpSource {
    async fn read(&self, file: &str) -> Result<Vec<u8>> {
        Ok(self.get(file, None).await?.2)
    }
    async fn read_range(&self, file: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let (status, _, body) = self.get(file, Some((offset, offset + len - 1))).await?;
        let bytes = if status == 206 {
            body
        } else {
            // The server ignored Range and sent the whole file.
            let end = offset.saturating_add(len).min(body.len() as u64);
            body.get(offset as usize..end as usize).map(<[u8]>::to_vec).unwrap_or_default()
        };
        if (bytes.len() as u64) < len {
            return Err(short_read(&self.url(file), offset, len, bytes.len()));
        }
        Ok(bytes)
    }
    async fn read_chunk(&self, file: &str, offset: u64, len: u64) -> Result<Chunk> {
        if len == 0 {
            return Ok(Chunk::Host(Vec::new()));
        }
        let (status, _, body) = self.get_js(file, Some((offset, offset + len - 1))).await?;
        let n = body.length() as u64;
        let arr = if status == 206 {
            body
        } else {
            // The server ignored Range and sent the whole file.
            let end = offset.saturating_add(len).min(n);
            body.subarray(offset.min(n) as u32, end as u32)
        };
        if (arr.length() as u64) < len {
            return Err(short_read(&self.url(file), offset, len, arr.length() as usize));
        }
        Ok(Chunk::Js(arr))
    }
    async fn len(&self, file: &str) -> Result<u64> {
        let (status, headers, resp) = self.fetch(file, Some((0, 0))).await?;
        if status != 206 {
            // The server ignored Range: the length is in Content-Length; do not download.
            if let Some(n) = headers.get("Content-Length").ok().flatten().and_then(|v| v.trim().parse().ok()) {
                Self::cancel_body(&resp);
                return Ok(n);
            }
        }
        let body = {
            let buf = wasm_bindgen_futures::JsFuture::from(
                resp.array_buffer().map_err(|e| Error::Io { file: self.url(file), msg: format!("{e:?}") })?,
            )
            .await
            .map_err(|e| Error::Io { file: self.url(file), msg: format!("{e:?}") })?;
            js_sys::Uint8Array::new(&buf).to_vec()
        };
        if status == 206 {
            // Content-Range: bytes 0-0/TOTAL
            let cr = headers.get("Content-Range").ok().flatten().unwrap_or_default();
            cr.rsplit('/')
                .next()
                .and_then(|t| t.trim().parse().ok())
                .ok_or_else(|| Error::Io { file: self.url(file), msg: format!("bad Content-Range `{cr}`") })
        } else {
            Ok(body.len() as u64)
        }
    }
    fn describe(&self) -> String {
        self.base.clone()
    }
    async fn ranged(&self, file: &str) -> Result<bool> {
        let (status, _, resp) = self.fetch(file, Some((0, 0))).await?;
        Self::cancel_body(&resp);
        Ok(status == 206)
    }
    async fn read_sequential(&self, file: &str, offset: u64, sink: &mut dyn FnMut(&[u8]) -> Result<bool>) -> Result<()> {
        use wasm_bindgen::JsCast;
        let url = self.url(file);
        let io = |msg: String| Error::Io { file: url.clone(), msg };
        let get = |o: &wasm_bindgen::JsValue, k: &str| js_sys::Reflect::get(o, &k.into()).map_err(|e| io(format!("{e:?}")));
        let (_, _, resp) = self.fetch(file, None).await?;
        let body = get(&resp, "body")?;
        let get_reader: js_sys::Function = get(&body, "getReader")?.dyn_into().map_err(|_| io("no body reader".into()))?;
        let reader = get_reader.call0(&body).map_err(|e| io(format!("{e:?}")))?;
        let read: js_sys::Function = get(&reader, "read")?.dyn_into().map_err(|_| io("no read()".into()))?;
        let mut at = 0u64;
        loop {
            let p: js_sys::Promise = read.call0(&reader).map_err(|e| io(format!("{e:?}")))?.dyn_into().map_err(|_| io("read() gave no promise".into()))?;
            let chunk = wasm_bindgen_futures::JsFuture::from(p).await.map_err(|e| io(format!("network error: {e:?}")))?;
            if get(&chunk, "done")?.as_bool().unwrap_or(true) {
                return Ok(());
            }
            let bytes = js_sys::Uint8Array::new(&get(&chunk, "value")?).to_vec();
            let n = bytes.len() as u64;
            // Skip what lies before `offset`.
            let skip = offset.saturating_sub(at).min(n) as usize;
            at += n;
            if skip < bytes.len() && !sink(&bytes[skip..])? {
                let cancel = get(&reader, "cancel")?;
                if let Some(f) = cancel.dyn_ref::<js_sys::Function>() {
                    let _ = f.call0(&reader);
                }
                return Ok(());
            }
        }
    }
}
