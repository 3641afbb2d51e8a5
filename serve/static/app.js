// The demo page: microphone -> AudioWorklet (Float32 PCM at the model's rate) -> WebSocket /v1/stream -> score
// meter and detection list. `?autostart=1` starts at once (used by the browser test); `?model=NAME` picks a model.
const BATCH_SECONDS = 0.1;
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
let running = null;

async function loadModels() {
  const zoo = await (await fetch("/v1/models")).json();
  const select = $("model");
  for (const model of zoo.models) {
    const option = new Option(`${model.name} (${model.keyword}, ${model.architecture})`, model.name);
    option.disabled = !model.streaming;
    select.add(option);
  }
  select.value = params.get("model") || zoo.default;
  return zoo;
}

function setStatus(text) { $("status").textContent = text; }

function showScore(score, timeS, threshold) {
  const fill = $("meter-fill");
  fill.style.width = `${Math.round(score * 100)}%`;
  fill.classList.toggle("above", score >= threshold);
  $("score").textContent = score.toFixed(3);
  $("stream-time").textContent = timeS.toFixed(1);
}

function addDetection(message) {
  const item = document.createElement("li");
  item.className = "detection";
  item.dataset.timeS = message.time_s;
  const clock = new Date().toLocaleTimeString();
  item.textContent = `${message.keyword} at ${message.time_s.toFixed(2)} s (score ${message.score.toFixed(3)}, ${clock})`;
  $("detections").prepend(item);
}

async function start() {
  $("start").disabled = true;
  const model = $("model").value;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/stream?format=f32&model=${encodeURIComponent(model)}`);
  socket.binaryType = "arraybuffer";
  const ready = await new Promise((resolve, reject) => {
    socket.onmessage = (event) => resolve(JSON.parse(event.data));
    socket.onerror = () => reject(new Error("WebSocket failed"));
  });
  if (ready.type !== "ready") throw new Error(ready.message);
  $("keyword").textContent = ready.keyword;
  $("threshold").textContent = ready.threshold.toFixed(3);
  $("meter-threshold").style.left = `${ready.threshold * 100}%`;
  $("stages").textContent = ready.verified_by
    ? `(two stages: the streaming model proposes, ${ready.verified_by} verifies; the meter shows the verifier's mean)`
    : "(the meter shows the smoothed keyword probability)";

  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  let context;
  try {
    context = new AudioContext({ sampleRate: ready.sample_rate });
  } catch {
    context = new AudioContext(); // the worklet resamples
  }
  await context.audioWorklet.addModule("/static/capture-worklet.js");
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "capture-processor", {
    processorOptions: { targetRate: ready.sample_rate, batchSamples: Math.round(ready.sample_rate * BATCH_SECONDS) },
  });
  node.port.onmessage = (event) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(event.data.buffer);
  };
  source.connect(node);
  await context.resume();

  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "score") showScore(message.score, message.time_s, ready.threshold);
    else if (message.type === "detection") addDetection(message);
    else if (message.type === "error") setStatus(`error: ${message.message}`);
  };
  socket.onclose = () => { stop(); setStatus("disconnected"); };
  running = { socket, stream, context };
  setStatus(`listening (${context.sampleRate} Hz capture, ${ready.sample_rate} Hz to the model)`);
  $("stop").disabled = false;
}

function stop() {
  if (!running) return;
  const { socket, stream, context } = running;
  running = null;
  stream.getTracks().forEach((track) => track.stop());
  context.close();
  if (socket.readyState === WebSocket.OPEN) socket.close();
  $("start").disabled = false;
  $("stop").disabled = true;
  setStatus("stopped");
}

$("start").onclick = () => start().catch((error) => { setStatus(`error: ${error.message}`); $("start").disabled = false; });
$("stop").onclick = stop;
loadModels().then((zoo) => {
  const chosen = zoo.models.find((m) => m.name === $("model").value);
  if (chosen) $("keyword").textContent = chosen.keyword;
  if (params.get("autostart") === "1") $("start").click();
}).catch((error) => setStatus(`error: ${error.message}`));
