cd "$(dirname "$0")/../../.."
for cap in 1.0 0.95 0.9 0.8; do for ratio in 0.6 0.7; do
  OMP_NUM_THREADS=1 .venv/bin/python train.py +method=slimming method.callback.pruning_ratio=$ratio method.callback.max_pruning_ratio=$cap latency.batch_size=0 hydra.run.dir=logs/capsweep/r${ratio}_c${cap} > /dev/null 2>&1
  python3 -c "
import json;r=json.load(open('logs/capsweep/r${ratio}_c${cap}/results.json'))
c=r['compressed'];print('ratio $ratio cap $cap', 'after-cut', c['test_acc'], 'before-recal', c.get('bn_recalibration',{}).get('test_acc_before'), 'final', r['final']['test_acc'], 'macs', c['macs'], 'dead', list(c.get('dead_channels',{}).items())[:3])"
done; done
