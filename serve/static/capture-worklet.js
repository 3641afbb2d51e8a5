// AudioWorklet: the microphone's first channel, resampled to the model's rate (linear interpolation; the page asks
// the AudioContext for that rate, so this usually passes samples through), posted as Float32Array batches.
class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate, batchSamples } = options.processorOptions;
    this.step = sampleRate / targetRate; // input samples per output sample
    this.position = 0; // where the next output sample lies, in input samples from the start of `previous`
    this.previous = 0;
    this.batch = new Float32Array(batchSamples);
    this.filled = 0;
  }

  emit(value) {
    this.batch[this.filled++] = value;
    if (this.filled === this.batch.length) {
      this.port.postMessage(this.batch.slice(0));
      this.filled = 0;
    }
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    if (this.step === 1) {
      for (let i = 0; i < channel.length; i++) this.emit(channel[i]);
      return true;
    }
    // Input index -1 is the last sample of the previous block.
    while (this.position < channel.length) {
      const left = Math.floor(this.position) - 1;
      const frac = this.position - Math.floor(this.position);
      const a = left < 0 ? this.previous : channel[left];
      const b = channel[left + 1];
      this.emit(a + (b - a) * frac);
      this.position += this.step;
    }
    this.position -= channel.length;
    this.previous = channel[channel.length - 1];
    return true;
  }
}

registerProcessor("capture-processor", CaptureProcessor);
