// Training loss per optimizer step and eval loss at each evaluation, one chart.
import { CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';

export interface LossPoint {
  step: number;
  loss?: number;
  evalLoss?: number;
}

/** Merges the two series by step so recharts draws them on one x axis. */
export function mergeLossSeries(losses: { step: number; loss: number }[], evalLosses: { step: number; loss: number }[]): LossPoint[] {
  const byStep = new Map<number, LossPoint>();
  for (const p of losses) byStep.set(p.step, { step: p.step, loss: p.loss });
  for (const p of evalLosses) byStep.set(p.step, { ...(byStep.get(p.step) ?? { step: p.step }), evalLoss: p.loss });
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

export function LossChart({ points, height = 260 }: { points: LossPoint[]; height?: number }) {
  if (points.length === 0) {
    return <div className="flex items-center justify-center text-sm text-stone-500" style={{ height }}>The loss curve appears after the first step.</div>;
  }
  return (
    <div style={{ height }} data-testid="loss-chart">
      <ResponsiveContainer width="100%" height="100%">
        <LineChart data={points} margin={{ top: 8, right: 16, bottom: 4, left: 0 }}>
          <CartesianGrid strokeDasharray="3 3" stroke="currentColor" strokeOpacity={0.15} />
          <XAxis dataKey="step" type="number" domain={['dataMin', 'dataMax']} tick={{ fontSize: 12 }} stroke="currentColor" strokeOpacity={0.5} />
          <YAxis tick={{ fontSize: 12 }} width={48} stroke="currentColor" strokeOpacity={0.5} domain={['auto', 'auto']} />
          <Tooltip formatter={(value) => (typeof value === 'number' ? value.toFixed(4) : String(value))} />
          <Legend />
          <Line type="monotone" dataKey="loss" name="training loss" stroke="#6366f1" dot={false} isAnimationActive={false} connectNulls />
          <Line type="monotone" dataKey="evalLoss" name="eval loss" stroke="#f59e0b" strokeWidth={2} isAnimationActive={false} connectNulls />
        </LineChart>
      </ResponsiveContainer>
    </div>
  );
}
