//! A browser cache in front of any [`Source`] (wasm32 only): every read — whole files,
//! byte ranges, lengths — goes into the Cache API (`caches.open(name)`) as it arrives, keyed
//! by the source's URL and the range. A second load of the same model with the same chunk
//! plan is then served from the cache with no network request at all.
//!
//! Stored per request, so the wasm heap holds at most one request's bytes at a time, as
//! without the cache. A file that fails its manifest check is evicted entry by entry
//! ([`CachedSource::evict_file`]), so the next load fetches it from the network. A cache that cannot be opened (storage disabled, opaque origin) makes
//! the wrapper pass reads through uncached.

use wasm_bindgen::JsCast;

use super::source::Chunk;
use super::Source;
use crate::error::{Error, Result};

pub struct CachedSource<S: Source> {
    inner: S,
    cache_name: String,
    /// Reads served from the cache / from the inner source (for tests and stats).
    pub hits: std::cell::Cell<usize>,
    pub misses: std::cell::Cell<usize>,
}

fn js(e: wasm_bindgen::JsValue) -> String {
    format!("{e:?}")
}

impl<S: Source> CachedSource<S> {
    pub fn new(inner: S, cache_name: &str) -> Self {
        Self { inner, cache_name: cache_name.to_string(), hits: Default::default(), misses: Default::default() }
    }

    /// The cache key for `what` of `file` (a URL the Cache API accepts).
    fn key(&self, file: &str, what: &str) -> String {
        let base = self.inner.describe();
        let base = if base.contains("://") { base } else { format!("https://gllm-web.local/{base}") };
        format!("{}/{file}?gllm={what}", base.trim_end_matches('/'))
    }

    async fn cache(&self) -> Option<web_sys::Cache> {
        let global = js_sys::global();
        let caches = js_sys::Reflect::get(&global, &"caches".into()).ok()?;
        if caches.is_undefined() {
            return None;
        }
        let caches: web_sys::CacheStorage = caches.dyn_into().ok()?;
        let p = caches.open(&self.cache_name);
        wasm_bindgen_futures::JsFuture::from(p).await.ok()?.dyn_into().ok()
    }

    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        Some(self.get_js(key).await?.to_vec())
    }

    /// The cached bytes of `key` left in a JS array (no copy into wasm memory).
    async fn get_js(&self, key: &str) -> Option<js_sys::Uint8Array> {
        let cache = self.cache().await?;
        let v = wasm_bindgen_futures::JsFuture::from(cache.match_with_str(key)).await.ok()?;
        if v.is_undefined() {
            return None;
        }
        let resp: web_sys::Response = v.dyn_into().ok()?;
        let buf = wasm_bindgen_futures::JsFuture::from(resp.array_buffer().ok()?).await.ok()?;
        Some(js_sys::Uint8Array::new(&buf))
    }

    async fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.put_js(key, &js_sys::Uint8Array::from(bytes)).await
    }

    async fn put_js(&self, key: &str, arr: &js_sys::Uint8Array) -> Result<()> {
        let Some(cache) = self.cache().await else { return Ok(()) };
        let io = |m: String| Error::Io { file: key.to_string(), msg: format!("cache put: {m}") };
        let resp = web_sys::Response::new_with_opt_buffer_source(Some(arr)).map_err(|e| io(js(e)))?;
        wasm_bindgen_futures::JsFuture::from(cache.put_with_str(key, &resp)).await.map_err(|e| io(js(e)))?;
        Ok(())
    }

    /// `key` of `file` from the cache, else from `fetch` (then stored). A file the inner
    /// source did not have (`NotFound`: an optional config, no manifest) is remembered as
    /// absent under `file?gllm=missing`, so a later load with the network gone still sees it
    /// as absent instead of failing on the request.
    async fn cached(&self, file: &str, key: String, fetch: impl std::future::Future<Output = Result<Vec<u8>>>) -> Result<Vec<u8>> {
        if let Some(b) = self.get(&key).await {
            self.hits.set(self.hits.get() + 1);
            return Ok(b);
        }
        let missing = self.key(file, "missing");
        if self.get(&missing).await.is_some() {
            self.hits.set(self.hits.get() + 1);
            return Err(Error::NotFound { file: format!("{}/{file}", self.inner.describe().trim_end_matches('/')) });
        }
        self.misses.set(self.misses.get() + 1);
        match fetch.await {
            Ok(b) => {
                self.put(&key, &b).await?;
                Ok(b)
            }
            Err(e @ Error::NotFound { .. }) => {
                self.put(&missing, &[]).await?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes every entry of `file` in this cache (its ranges, whole reads, length, ranged
    /// probe and absence; after a failed integrity check) and returns how many there were.
    pub async fn evict_file(&self, file: &str) -> Result<usize> {
        let Some(cache) = self.cache().await else { return Ok(0) };
        let io = |m: String| Error::Io { file: file.to_string(), msg: format!("cache evict: {m}") };
        // Stored keys are normalised URLs: normalise the prefix the same way.
        let prefix = self.key(file, "");
        let prefix = web_sys::Request::new_with_str(&prefix).map(|r| r.url()).unwrap_or(prefix);
        let keys = wasm_bindgen_futures::JsFuture::from(cache.keys()).await.map_err(|e| io(js(e)))?;
        let keys: js_sys::Array = keys.dyn_into().map_err(|_| io("keys() is not an array".into()))?;
        let mut n = 0;
        for k in keys.iter() {
            let Ok(req) = k.dyn_into::<web_sys::Request>() else { continue };
            if req.url().starts_with(&prefix) {
                wasm_bindgen_futures::JsFuture::from(cache.delete_with_request(&req)).await.map_err(|e| io(js(e)))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Deletes every entry of this cache.
    pub async fn clear(&self) -> Result<()> {
        let global = js_sys::global();
        let Ok(caches) = js_sys::Reflect::get(&global, &"caches".into()) else { return Ok(()) };
        let Ok(caches) = caches.dyn_into::<web_sys::CacheStorage>() else { return Ok(()) };
        let _ = wasm_bindgen_futures::JsFuture::from(caches.delete(&self.cache_name)).await;
        Ok(())
    }
}

impl<S: Source> Source for CachedSource<S> {
    async fn read(&self, file: &str) -> Result<Vec<u8>> {
        self.cached(file, self.key(file, "all"), self.inner.read(file)).await
    }
    async fn read_range(&self, file: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let b = self.cached(file, self.key(file, &format!("{offset}-{len}")), self.inner.read_range(file, offset, len)).await?;
        if b.len() as u64 != len {
            return Err(Error::Io { file: file.to_string(), msg: format!("cached range {offset}+{len} holds {} bytes", b.len()) });
        }
        Ok(b)
    }
    async fn read_chunk(&self, file: &str, offset: u64, len: u64) -> Result<Chunk> {
        // The same entry as `read_range`, but cached bytes stay in a JS array on their way to
        // the GPU, and fetched ones are stored from theirs.
        let key = self.key(file, &format!("{offset}-{len}"));
        if let Some(a) = self.get_js(&key).await {
            self.hits.set(self.hits.get() + 1);
            if a.length() as u64 != len {
                return Err(Error::Io { file: file.to_string(), msg: format!("cached range {offset}+{len} holds {} bytes", a.length()) });
            }
            return Ok(Chunk::Js(a));
        }
        self.misses.set(self.misses.get() + 1);
        let chunk = self.inner.read_chunk(file, offset, len).await?;
        if chunk.len() == len {
            match &chunk {
                Chunk::Js(a) => self.put_js(&key, a).await?,
                Chunk::Host(b) => self.put(&key, b).await?,
            }
        }
        Ok(chunk)
    }
    async fn len(&self, file: &str) -> Result<u64> {
        let b = self.cached(file, self.key(file, "len"), async { Ok(self.inner.len(file).await?.to_le_bytes().to_vec()) }).await?;
        let a: [u8; 8] = b.as_slice().try_into().map_err(|_| Error::Io { file: file.into(), msg: "bad cached length".into() })?;
        Ok(u64::from_le_bytes(a))
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn ranged(&self, file: &str) -> Result<bool> {
        // Cached ranges are always available, so a cached file reads as ranged; a first
        // load asks the inner source.
        let b = self.cached(file, self.key(file, "ranged"), async { Ok(vec![self.inner.ranged(file).await? as u8]) }).await?;
        Ok(b.first() == Some(&1))
    }
    async fn evict(&self, file: &str) -> Result<()> {
        self.evict_file(file).await?;
        self.inner.evict(file).await
    }
    async fn read_sequential(&self, file: &str, offset: u64, sink: &mut dyn FnMut(&[u8]) -> Result<bool>) -> Result<()> {
        // Not cached: a server without Range is read in one pass (the plan's requests are not
        // separate fetches there).
        self.inner.read_sequential(file, offset, sink).await
    }
}

/// An [`HttpSource`](super::HttpSource), through the browser cache or not (the JS load
/// option `cache`).
pub enum WebSource {
    Plain(super::HttpSource),
    Cached(CachedSource<super::HttpSource>),
}

impl WebSource {
    /// `cache`: `None` reads straight from the network, `Some(name)` through the Cache API.
    pub fn new(base_url: &str, cache: Option<&str>) -> Self {
        let http = super::HttpSource::new(base_url);
        match cache {
            Some(name) => WebSource::Cached(CachedSource::new(http, name)),
            None => WebSource::Plain(http),
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            WebSource::Plain($s) => $e,
            WebSource::Cached($s) => $e,
        }
    };
}

impl Source for WebSource {
    async fn read(&self, file: &str) -> Result<Vec<u8>> {
        each!(self, s => s.read(file).await)
    }
    async fn read_range(&self, file: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        each!(self, s => s.read_range(file, offset, len).await)
    }
    async fn read_chunk(&self, file: &str, offset: u64, len: u64) -> Result<Chunk> {
        each!(self, s => s.read_chunk(file, offset, len).await)
    }
    async fn len(&self, file: &str) -> Result<u64> {
        each!(self, s => s.len(file).await)
    }
    fn describe(&self) -> String {
        each!(self, s => s.describe())
    }
    async fn ranged(&self, file: &str) -> Result<bool> {
        each!(self, s => s.ranged(file).await)
    }
    async fn read_sequential(&self, file: &str, offset: u64, sink: &mut dyn FnMut(&[u8]) -> Result<bool>) -> Result<()> {
        each!(self, s => s.read_sequential(file, offset, sink).await)
    }
    async fn evict(&self, file: &str) -> Result<()> {
        each!(self, s => s.evict(file).await)
    }
}
