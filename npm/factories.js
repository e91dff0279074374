// Every class of gllm-web and its static factories: the main entry adds `init()` to these,
// and the worker entry proxies them (one list, so the two cannot differ).
export const FACTORIES = { Embedder: ["load"], Reranker: ["load"], Generator: ["load"], SearchIndex: ["create", "import"] };
