"""`voice-agent bench`: latency, CPU and memory of the whole appliance against Home Assistant's own Wyoming services
(wyoming-faster-whisper + wyoming-piper, same model files, same machine, same run).

- `corpus`: the spoken commands (espeak-ng voices, clean and noisy) with their true end of speech;
- `pipeline`: our side, the full in-process appliance fed at microphone pace;
- `reference`: Home Assistant's servers as its add-ons ship them by default, driven as Home Assistant drives them;
- `sweeps`: optional VAD and LLM measurements;
- `report`: percentiles over every command, the human report and README's table;
- `cli`: `voice-agent bench` itself."""
